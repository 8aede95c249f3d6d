//! What a node id may be: it ends up in queue names and metrics labels, so it is short and
//! made of a few safe characters; without one configured, the host name gives it.

/// Longest accepted node id.
pub(crate) const NODE_ID_MAX_LEN: usize = 64;

/// `node-<host>` with the host name reduced to node-id characters, or
/// `node-1` when there is no usable host name.
pub(crate) fn from_hostname(hostname: Option<&str>) -> String {
    let host: String = hostname
        .unwrap_or_default()
        .chars()
        .map(|c| if is_node_id_char(c) { c } else { '-' })
        .take(NODE_ID_MAX_LEN - "node-".len())
        .collect();
    let host = host.trim_matches('-');
    if host.is_empty() {
        "node-1".to_owned()
    } else {
        format!("node-{host}")
    }
}

/// Characters allowed in a node id: they end up in queue names and metrics labels.
pub(crate) fn is_node_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}
