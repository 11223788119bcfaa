"""Query Lakehouse with plain pyarrow.flight (no Flight SQL library): log in, send a
CommandStatementQuery (packed in protobuf Any), fetch the result.

The command is encoded with the protobuf library from a two-line descriptor: Flight SQL's
CommandStatementQuery is `string query = 1` in package arrow.flight.protocol.sql.
"""

import pyarrow.flight as flight
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

from connection import PASSWORD, TLS_CA, URL, USER


def command_statement_query(sql):
    file = descriptor_pb2.FileDescriptorProto(
        name="flight_sql_subset.proto", package="arrow.flight.protocol.sql", syntax="proto3")
    message = file.message_type.add(name="CommandStatementQuery")
    message.field.add(name="query", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    cls = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("arrow.flight.protocol.sql.CommandStatementQuery"))
    packed = any_pb2.Any()
    packed.Pack(cls(query=sql))
    return packed.SerializeToString()


client = flight.FlightClient(URL, tls_root_certs=open(TLS_CA, "rb").read() if TLS_CA else None)
options = flight.FlightCallOptions()
if USER:
    # Basic login via the Flight handshake; the answer is the ("authorization", "Bearer ...")
    # header to send on every later call.
    options = flight.FlightCallOptions(headers=[client.authenticate_basic_token(USER, PASSWORD)])
descriptor = flight.FlightDescriptor.for_command(
    command_statement_query("SELECT r_name FROM region ORDER BY r_regionkey"))
info = client.get_flight_info(descriptor, options)
table = client.do_get(info.endpoints[0].ticket, options).read_all()
print(table.column("r_name").to_pylist())
client.close()
