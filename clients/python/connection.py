"""Connection settings shared by the examples, from the environment:

    LAKEHOUSE_URL       grpc://127.0.0.1:50051 (default), or grpc+tls://HOST:PORT with TLS
    LAKEHOUSE_TLS_CA    PEM file of the CA (or self-signed certificate) to trust for TLS
    LAKEHOUSE_USER      user name, when the server runs with --auth basic
    LAKEHOUSE_PASSWORD  its password
"""

import os

URL = os.environ.get("LAKEHOUSE_URL", "grpc://127.0.0.1:50051")
TLS_CA = os.environ.get("LAKEHOUSE_TLS_CA")
USER = os.environ.get("LAKEHOUSE_USER")
PASSWORD = os.environ.get("LAKEHOUSE_PASSWORD", "")


def adbc_connect():
    """An ADBC DB-API connection (pip install adbc-driver-flightsql pyarrow)."""
    import adbc_driver_flightsql.dbapi as flight_sql

    options = {}
    if TLS_CA:
        options["adbc.flight.sql.client_option.tls_root_certs"] = open(TLS_CA).read()
    if USER:
        # ADBC logs in with the Flight handshake and sends the bearer token on every call.
        options["username"], options["password"] = USER, PASSWORD
    # autocommit=True: Lakehouse has no transactions; each statement commits on its own.
    return flight_sql.connect(URL, db_kwargs=options, autocommit=True)
