//! Union-find whose root is always the smallest member, so a cluster's representative is its first
//! occurrence in input order regardless of the order in which unions happen.

pub struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
        }
    }

    pub fn find(&mut self, x: u32) -> u32 {
        let mut root = x;
        while self.parent[root as usize] != root {
            root = self.parent[root as usize];
        }
        let mut node = x;
        while self.parent[node as usize] != root {
            let next = self.parent[node as usize];
            self.parent[node as usize] = root;
            node = next;
        }
        root
    }

    /// Joins the sets of `a` and `b`; returns true when they were separate.
    pub fn union(&mut self, a: u32, b: u32) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        let (low, high) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[high as usize] = low;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::UnionFind;

    #[test]
    fn root_is_the_smallest_member_whatever_the_union_order() {
        let mut uf = UnionFind::new(6);
        uf.union(5, 4);
        uf.union(4, 2);
        uf.union(3, 5);
        for x in [2, 3, 4, 5] {
            assert_eq!(uf.find(x), 2);
        }
        assert_eq!(uf.find(0), 0);
        assert_eq!(uf.find(1), 1);
    }

    #[test]
    fn union_reports_whether_sets_were_joined() {
        let mut uf = UnionFind::new(3);
        assert!(uf.union(0, 1));
        assert!(!uf.union(1, 0));
        assert!(uf.union(2, 1));
        assert_eq!(uf.find(2), 0);
    }
}
