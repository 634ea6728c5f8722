//! Network bring-up on the device: links, addresses and routes over rtnetlink, a DHCPv4 client, and the DNS stub's protocol logic.
