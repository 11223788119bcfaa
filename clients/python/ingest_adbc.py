"""Load data into Lakehouse with ADBC: bulk ingest of a pyarrow table (CommandStatementIngest)
and INSERT with bound parameters (one commit for all rows), then query it.

Ingest modes: "create" (fail if the table exists), "append" (fail if it does not), "replace",
"create_append". Each call is one atomic commit (one new table version).
"""

import pyarrow as pa

from connection import adbc_connect

data = pa.table({"id": [1, 2, 3], "city": ["Lisbon", "Porto", "Braga"]})

with adbc_connect() as conn:
    with conn.cursor() as cur:
        rows = cur.adbc_ingest("cities", data, mode="replace")
        print(f"ingested {rows} rows")
        cur.executemany("INSERT INTO cities VALUES (?, ?)", [(4, "Coimbra"), (5, "Faro")])
        print(f"inserted {cur.rowcount} rows")
        cur.execute("SELECT city FROM cities ORDER BY id")
        print(cur.fetch_arrow_table().column("city").to_pylist())
