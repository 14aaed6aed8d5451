"""DAGs of the deployment tier, copied into the deployment's DAG folder (with the agent-workflow
example). Each module is self-contained for Airflow's DAG processor and names the ids the tests
script in the emulator."""
