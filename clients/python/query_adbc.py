"""Query Lakehouse from Python with ADBC (pip install adbc-driver-flightsql pyarrow): a query,
a query with bound `?` parameters, and the schema of a table.

Start a server first: scripts/serve.sh (TPC-H sample at scale 0.1 on 127.0.0.1:50051). For TLS
or a login, see connection.py.
"""

from connection import adbc_connect

with adbc_connect() as conn:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS qty, count(*) AS n "
            "FROM lineitem GROUP BY 1, 2 ORDER BY 1, 2"
        )
        print(cur.fetch_arrow_table())
        cur.execute("SELECT n_name FROM nation WHERE n_regionkey = ? ORDER BY n_name",
                    parameters=(1,))
        print(cur.fetch_arrow_table().column("n_name").to_pylist())
    print(conn.adbc_get_table_schema("orders"))
