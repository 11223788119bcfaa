"""Query Lakehouse from Python with ADBC (pip install adbc-driver-flightsql pyarrow).

Start a server first: scripts/serve.sh (TPC-H sample at scale 0.1 on 127.0.0.1:50051).
"""

import adbc_driver_flightsql.dbapi as flight_sql

# autocommit=True: Lakehouse has no transactions; each statement commits on its own.
with flight_sql.connect("grpc://127.0.0.1:50051", autocommit=True) as conn:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS qty, count(*) AS n "
            "FROM lineitem GROUP BY 1, 2 ORDER BY 1, 2"
        )
        print(cur.fetch_arrow_table())
    print(conn.adbc_get_table_schema("orders"))
