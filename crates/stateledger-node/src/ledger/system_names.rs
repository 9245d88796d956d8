//! The names of the systems in the ledger, so that a question about a system with no record can
//! be answered with the names it was probably meant to be ("no records for `ordres-service`;
//! did you mean `orders-service`?"). Derived from the leaves like every other index.

use std::collections::BTreeSet;

/// Every system name with at least one leaf.
#[derive(Debug, Default, Clone)]
pub struct SystemNames {
    names: BTreeSet<String>,
}

impl SystemNames {
    pub fn insert(&mut self, name: &str) {
        if !self.names.contains(name) {
            self.names.insert(name.to_string());
        }
    }

    /// Up to `limit` names close to `name`, closest first: within an edit distance of a third
    /// of its length (at least 2), or containing it, or contained in it, ignoring case.
    pub fn near(&self, name: &str, limit: usize) -> Vec<String> {
        let wanted = name.to_lowercase();
        let budget = (wanted.chars().count() / 3).max(2);
        let mut scored: Vec<(usize, &String)> = self
            .names
            .iter()
            .filter(|n| n.as_str() != name)
            .filter_map(|n| {
                let lower = n.to_lowercase();
                let d = edit_distance(&wanted, &lower);
                let related =
                    !wanted.is_empty() && (lower.contains(&wanted) || wanted.contains(&lower));
                (d <= budget || related).then_some((d, n))
            })
            .collect();
        scored.sort();
        scored
            .into_iter()
            .take(limit)
            .map(|(_, n)| n.clone())
            .collect()
    }
}

/// Levenshtein distance over characters (insertions, deletions and substitutions cost 1).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_come_first_and_far_ones_not_at_all() {
        let mut names = SystemNames::default();
        for n in ["orders-service", "orders", "billing-service", "inventory"] {
            names.insert(n);
        }
        assert_eq!(names.near("ordres-service", 5), ["orders-service"]);
        assert_eq!(names.near("order", 5), ["orders", "orders-service"]);
        assert_eq!(names.near("Billing-Service", 5), ["billing-service"]);
        assert!(names.near("payments", 5).is_empty());
        assert_eq!(names.near("orders-service", 5), ["orders"]);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
