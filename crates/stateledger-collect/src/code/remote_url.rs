//! A repository identifier from a git remote URL: the same repository reached over https, ssh or
//! scp-like syntax gets one id, and credentials in the URL never reach the ledger.

/// Normalises a remote URL to `host[:port]/path`:
/// - scheme, user name and password are dropped (`https://user:token@host/...` leaks nothing);
/// - the host is lower-cased, the scheme's default port dropped, other ports kept;
/// - a trailing `/` and `.git` are dropped;
/// - scp-like `git@github.com:acme/orders.git` becomes `github.com/acme/orders`.
///
/// A local path (or `file://` URL) becomes `file:<path>` with the same suffix rules.
pub fn normalise_remote_url(url: &str) -> String {
    let url = url.trim();
    if let Some((scheme, rest)) = url.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" {
            return format!("file:{}", trim_path(rest, false));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host_port = drop_default_port(&scheme, &host_port.to_ascii_lowercase());
        return join(&host_port, path);
    }
    // scp-like: [user@]host:path, where no '/' comes before the ':'.
    if let Some((authority, path)) = url.split_once(':') {
        if !authority.is_empty() && !authority.contains('/') && !path.starts_with("//") {
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            return join(&host.to_ascii_lowercase(), path);
        }
    }
    format!("file:{}", trim_path(url, false))
}

fn drop_default_port(scheme: &str, host_port: &str) -> String {
    let default = match scheme {
        "https" => Some("443"),
        "http" => Some("80"),
        "ssh" | "git+ssh" | "ssh+git" => Some("22"),
        "git" => Some("9418"),
        _ => None,
    };
    match (host_port.rsplit_once(':'), default) {
        (Some((host, port)), Some(d)) if port == d => host.to_string(),
        _ => host_port.to_string(),
    }
}

fn join(host: &str, path: &str) -> String {
    let path = trim_path(path, true);
    if path.is_empty() {
        host.to_string()
    } else {
        format!("{host}/{path}")
    }
}

fn trim_path(path: &str, strip_leading: bool) -> String {
    let mut p = path.trim_end_matches('/');
    p = p.strip_suffix(".git").unwrap_or(p);
    p = p.trim_end_matches('/');
    if strip_leading {
        p = p.trim_start_matches('/');
    }
    p.to_string()
}

#[cfg(test)]
mod tests {
    use super::normalise_remote_url as n;

    #[test]
    fn the_same_repository_gets_one_id() {
        for url in [
            "https://github.com/acme/orders.git",
            "https://github.com/acme/orders",
            "https://github.com/acme/orders/",
            "HTTPS://GitHub.com:443/acme/orders.git",
            "git@github.com:acme/orders.git",
            "ssh://git@github.com/acme/orders.git",
            "ssh://git@github.com:22/acme/orders",
            "git://github.com/acme/orders.git",
        ] {
            assert_eq!(n(url), "github.com/acme/orders", "{url}");
        }
    }

    #[test]
    fn credentials_never_survive() {
        let id = n("https://ci-bot:ghp_SECRETTOKEN@github.com/acme/orders.git");
        assert_eq!(id, "github.com/acme/orders");
        assert!(!id.contains("SECRET"));
        assert_eq!(
            n("https://user:p%40ss@git.example.com/x/y"),
            "git.example.com/x/y"
        );
    }

    #[test]
    fn other_ports_and_local_paths_are_kept() {
        assert_eq!(
            n("ssh://git@git.example.com:2222/team/svc.git"),
            "git.example.com:2222/team/svc"
        );
        assert_eq!(n("/srv/git/orders.git"), "file:/srv/git/orders");
        assert_eq!(n("file:///srv/git/orders.git/"), "file:/srv/git/orders");
    }
}
