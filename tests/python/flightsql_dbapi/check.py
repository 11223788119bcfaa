"""Runs in the flightsql-dbapi venv (SQLAlchemy < 2): connects to a Lakehouse server with
flightsql-dbapi's DB-API and its SQLAlchemy dialect, queries and reflects, and prints a JSON
report for tests/python/test_compat.py to check."""

import argparse
import json
import urllib.parse

import flightsql.sqlalchemy  # noqa: F401  registers the datafusion+flightsql dialect
import sqlalchemy
from flightsql import FlightSQLClient, connect

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--tls-ca", help="PEM CA certificate; the server speaks TLS")
parser.add_argument("--user")
parser.add_argument("--password")
args = parser.parse_args()

# DB-API: FlightSQLClient is flightsql-dbapi's own Flight SQL client over pyarrow.flight.
client_kwargs = {"host": "localhost", "port": args.port, "user": args.user,
                 "password": args.password}
if args.tls_ca:
    client_kwargs["tls_root_certs"] = open(args.tls_ca, "rb").read()
else:
    client_kwargs["insecure"] = True
report = {}
with connect(FlightSQLClient(**client_kwargs)) as conn:
    cursor = conn.cursor()
    cursor.execute("SELECT n_name, n_nationkey FROM nation ORDER BY n_name LIMIT 2")
    report["dbapi_rows"] = [list(row) for row in cursor.fetchall()]

# SQLAlchemy (what Superset uses): the URL form Superset users type. TLS through the URL can
# only skip verification (the dialect has no CA option).
credentials = ""
if args.user:
    credentials = f"{urllib.parse.quote(args.user)}:{urllib.parse.quote(args.password)}@"
query = "disable_server_verification=true" if args.tls_ca else "insecure=true"
engine = sqlalchemy.create_engine(
    f"datafusion+flightsql://{credentials}localhost:{args.port}?{query}")
inspector = sqlalchemy.inspect(engine)
report["schemas"] = inspector.get_schema_names()
report["tables"] = inspector.get_table_names()
report["columns"] = {"region": [c["name"] for c in inspector.get_columns("region")]}
with engine.connect() as connection:
    rows = connection.execute(sqlalchemy.text("SELECT count(*) FROM region")).fetchall()
    report["sqlalchemy_rows"] = [list(row) for row in rows]
print(json.dumps(report))
