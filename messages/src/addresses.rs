//! Lists of broker addresses: `MERIT_AMQP_URL` may name several nodes of one RabbitMQ
//! cluster, comma-separated (`amqp://u:p@mq1:5672/v,amqp://u:p@mq2:5672/v`).

/// Splits a comma-separated list of URLs. A comma splits only where the next part starts
/// with a scheme (`letters://`), so a comma inside one URL (a password, a query) stays in
/// it; a single URL comes back whole.
pub fn split_url_list(list: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (at, _) in list.match_indices(',') {
        if starts_with_scheme(&list[at + 1..]) {
            parts.push(&list[start..at]);
            start = at + 1;
        }
    }
    parts.push(&list[start..]);
    parts
}

/// Whether `text` begins with `scheme://` (a letter, then letters, digits, `+`, `-`, `.`).
fn starts_with_scheme(text: &str) -> bool {
    let Some((scheme, _)) = text.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::split_url_list;

    #[test]
    fn one_url_is_one_part() {
        assert_eq!(
            split_url_list("amqp://u:p@mq:5672/%2f"),
            ["amqp://u:p@mq:5672/%2f"]
        );
    }

    #[test]
    fn a_list_splits_before_each_scheme() {
        assert_eq!(
            split_url_list("amqp://u:p@a:5672/v,amqps://u:p@b:5671/v,AMQP://c/v"),
            ["amqp://u:p@a:5672/v", "amqps://u:p@b:5671/v", "AMQP://c/v"]
        );
    }

    #[test]
    fn a_comma_inside_a_url_stays_in_it() {
        assert_eq!(
            split_url_list("amqp://u:pa,ss@a/v?x=1,2,amqp://u:p@b/v"),
            ["amqp://u:pa,ss@a/v?x=1,2", "amqp://u:p@b/v"]
        );
    }

    #[test]
    fn empty_parts_are_kept_for_the_caller_to_refuse() {
        assert_eq!(split_url_list(""), [""]);
        assert_eq!(split_url_list("amqp://a/v,"), ["amqp://a/v,"]);
    }
}
