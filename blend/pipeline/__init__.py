"""The stages chained: ingest -> profile -> plan -> execute (`chain.run_pipeline`), as
`blend run` and the Prefect pipeline flow call them."""
