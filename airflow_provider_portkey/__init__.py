"""Apache Airflow provider for the Portkey AI gateway."""

__version__ = "0.1.0"
