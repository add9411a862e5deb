-- MLflow uses the database named by POSTGRES_DB; Airflow gets its own.
CREATE DATABASE airflow OWNER recspark;
