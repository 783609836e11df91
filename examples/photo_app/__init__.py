"""An example photo-processing service on the Job Queue Coordinator: an API that takes uploads
(`photo_app.api`), workers that make thumbnails and read metadata (`photo_app.worker`), and its
configuration from the environment (`photo_app.config`)."""
