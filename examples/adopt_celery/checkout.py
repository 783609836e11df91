"""The team's call sites (unchanged by the migration)."""

from adopt_celery.tasks import order_total, send_invoice, send_receipt


def place_order(order_id: int, email: str, prices: list[float]) -> dict:
    return {
        "receipt": send_receipt.delay(order_id, email),
        "invoice": send_invoice.apply_async((order_id,), countdown=1),
        "total": order_total.delay(prices),
        "reminder": send_receipt.apply_async((order_id, email), countdown=3600),
    }
