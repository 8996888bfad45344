"""rabbitmqctl's info items for each kind of listing, in rabbitmqctl's order: the vocabulary
trimqctl validates and the control socket answers."""

QUEUE_ITEMS = (
    "name durable auto_delete arguments policy pid owner_pid exclusive exclusive_consumer_pid "
    "exclusive_consumer_tag messages_ready messages_unacknowledged messages messages_ready_ram "
    "messages_unacknowledged_ram messages_ram messages_persistent message_bytes "
    "message_bytes_ready message_bytes_unacknowledged message_bytes_ram "
    "message_bytes_persistent head_message_timestamp disk_reads disk_writes consumers "
    "consumer_utilisation consumer_capacity memory state type"
).split()
EXCHANGE_ITEMS = "name type durable auto_delete internal arguments policy".split()
BINDING_ITEMS = (
    "source_name source_kind destination_name destination_kind routing_key arguments"
).split()
CONNECTION_ITEMS = (
    "pid name port host peer_port peer_host ssl state channels protocol auth_mechanism user "
    "vhost timeout frame_max channel_max client_properties recv_oct recv_cnt send_oct send_cnt "
    "send_pend connected_at"
).split()
CHANNEL_ITEMS = (
    "pid connection name number user vhost transactional confirm consumer_count "
    "messages_unacknowledged messages_uncommitted acks_uncommitted messages_unconfirmed "
    "prefetch_count global_prefetch_count"
).split()
CONSUMER_ITEMS = (
    "queue_name channel_pid consumer_tag ack_required prefetch_count active activity_status "
    "arguments"
).split()
VHOST_ITEMS = "name description tags default_queue_type tracing cluster_state".split()

ITEMS = {
    "queues": QUEUE_ITEMS,
    "exchanges": EXCHANGE_ITEMS,
    "bindings": BINDING_ITEMS,
    "connections": CONNECTION_ITEMS,
    "channels": CHANNEL_ITEMS,
    "consumers": CONSUMER_ITEMS,
    "vhosts": VHOST_ITEMS,
}
