"""Bulk-load a pyarrow table into Lakehouse with ADBC (CommandStatementIngest), then query it.

Modes: "create" (fail if the table exists), "append" (fail if it does not), "replace",
"create_append". Each call is one atomic commit (one new table version).
"""

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa

data = pa.table({"id": [1, 2, 3], "city": ["Lisbon", "Porto", "Braga"]})

with flight_sql.connect("grpc://127.0.0.1:50051", autocommit=True) as conn:
    with conn.cursor() as cur:
        rows = cur.adbc_ingest("cities", data, mode="create_append")
        print(f"ingested {rows} rows")
        cur.execute("SELECT city FROM cities ORDER BY id")
        print(cur.fetch_arrow_table())
