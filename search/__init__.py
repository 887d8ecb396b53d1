"""Search: composes encoders (compression/) and indexes (indexes/) into pipelines, evaluation, API and CLI."""
