# The README's two commands: `make demo` and `make test` (the same as scripts/demo.sh and
# scripts/test.sh, which CI calls to keep pytest's exact exit code). Both create or refresh .venv.
.PHONY: demo test venv clean

demo: ## Run the photo-processing demo (REDIS_URL, else a throwaway redis-server); ARGS="--quick"
	scripts/demo.sh $(ARGS)

test: ## Run the tests against the Redis at 127.0.0.1:6379; ARGS="-k demo"
	scripts/test.sh $(ARGS)

venv:
	scripts/venv.sh dev

clean:
	rm -rf .venv build dist *.egg-info
