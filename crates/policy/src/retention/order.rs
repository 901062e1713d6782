//! The order of one repository's decisions, which is the order deletions
//! are carried out in (rule 7 of the module documentation).
//!
//! The constraints among deleted artifacts form a graph: an edge from an
//! index to each deleted child, and from a subject to each deleted referrer.
//! Content addressing makes cycles of one kind impossible in practice, but
//! an index whose subject is one of its own children makes a cycle of both
//! kinds, and the input is not to be trusted anyway. So:
//! - the graph's strongly connected components are ordered topologically,
//!   oldest push first among those ready: every edge between components is
//!   respected;
//! - within a component (a cycle), children come after their index and,
//!   where that allows, referrers after their subject; oldest push first
//!   among those ready. Only a cycle of children alone (impossible with real
//!   digests) breaks an index-before-child edge.
//!
//! Kept artifacts have no edges and fall in place by push time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::Artifact;
use super::evaluate::Graph;

/// Positions of `artifacts`, in decision order.
pub(super) fn safe_order(artifacts: &[Artifact], graph: &Graph, deleted: &[bool]) -> Vec<usize> {
    let n = artifacts.len();
    let mut by_age: Vec<usize> = (0..n).collect();
    by_age.sort_by(|&a, &b| {
        (artifacts[a].pushed_at_ms, &artifacts[a].digest)
            .cmp(&(artifacts[b].pushed_at_ms, &artifacts[b].digest))
    });
    let edges = Edges { graph, deleted };
    if !(0..n).any(|i| edges.from(i).next().is_some()) {
        return by_age;
    }
    let mut rank = vec![0; n];
    for (r, &i) in by_age.iter().enumerate() {
        rank[i] = r;
    }
    let (component, count) = strongly_connected_components(n, &edges);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); count];
    for &i in &by_age {
        members[component[i]].push(i);
    }
    let mut incoming = vec![0usize; count];
    for i in 0..n {
        for j in edges.from(i) {
            if component[i] != component[j] {
                incoming[component[j]] += 1;
            }
        }
    }
    // Components by their oldest member (members are sorted by age).
    let mut ready: BinaryHeap<Reverse<(usize, usize)>> = (0..count)
        .filter(|&c| incoming[c] == 0)
        .map(|c| Reverse((rank[members[c][0]], c)))
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse((_, c))) = ready.pop() {
        if let [single] = members[c][..] {
            order.push(single);
        } else {
            order_cycle(&members[c], &component, &edges, &rank, &mut order);
        }
        for &i in &members[c] {
            for j in edges.from(i) {
                let d = component[j];
                if d != c {
                    incoming[d] -= 1;
                    if incoming[d] == 0 {
                        ready.push(Reverse((rank[members[d][0]], d)));
                    }
                }
            }
        }
    }
    order
}

/// The constraint edges: both ends deleted.
struct Edges<'a> {
    graph: &'a Graph,
    deleted: &'a [bool],
}

impl Edges<'_> {
    fn children(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let from = self.deleted[i];
        self.graph.children[i]
            .iter()
            .copied()
            .filter(move |&j| from && self.deleted[j])
    }

    fn referrers(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        let from = self.deleted[i];
        self.graph.referrers[i]
            .iter()
            .copied()
            .filter(move |&j| from && self.deleted[j])
    }

    fn from(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.children(i).chain(self.referrers(i))
    }
}

/// Orders the members of one strongly connected component (sorted by age)
/// onto `order`.
fn order_cycle(
    members: &[usize],
    component: &[usize],
    edges: &Edges<'_>,
    rank: &[usize],
    order: &mut Vec<usize>,
) {
    let c = component[members[0]];
    let local: HashMap<usize, usize> = members.iter().enumerate().map(|(l, &i)| (i, l)).collect();
    let mut child_in = vec![0usize; members.len()];
    let mut referrer_in = vec![0usize; members.len()];
    for &i in members {
        for j in edges.children(i).filter(|&j| component[j] == c) {
            child_in[local[&j]] += 1;
        }
        for j in edges.referrers(i).filter(|&j| component[j] == c) {
            referrer_in[local[&j]] += 1;
        }
    }
    // Free of both constraints; free of index constraints only.
    let mut free: BinaryHeap<Reverse<(usize, usize)>> = BinaryHeap::new();
    let mut childless: BinaryHeap<Reverse<(usize, usize)>> = BinaryHeap::new();
    for (l, &i) in members.iter().enumerate() {
        if child_in[l] == 0 {
            if referrer_in[l] == 0 {
                free.push(Reverse((rank[i], i)));
            } else {
                childless.push(Reverse((rank[i], i)));
            }
        }
    }
    let mut emitted = vec![false; members.len()];
    let pop = |heap: &mut BinaryHeap<Reverse<(usize, usize)>>, emitted: &[bool]| {
        while let Some(Reverse((_, i))) = heap.pop() {
            if !emitted[local[&i]] {
                return Some(i);
            }
        }
        None
    };
    for _ in 0..members.len() {
        let next = pop(&mut free, &emitted)
            .or_else(|| pop(&mut childless, &emitted))
            // A cycle of index-child edges alone: take the oldest left.
            .unwrap_or_else(|| {
                members
                    .iter()
                    .copied()
                    .find(|&i| !emitted[local[&i]])
                    .expect("a member is left")
            });
        emitted[local[&next]] = true;
        order.push(next);
        for j in edges.children(next).filter(|&j| component[j] == c) {
            let l = local[&j];
            child_in[l] -= 1;
            if child_in[l] == 0 && !emitted[l] {
                let heap = if referrer_in[l] == 0 {
                    &mut free
                } else {
                    &mut childless
                };
                heap.push(Reverse((rank[j], j)));
            }
        }
        for j in edges.referrers(next).filter(|&j| component[j] == c) {
            let l = local[&j];
            referrer_in[l] -= 1;
            if referrer_in[l] == 0 && child_in[l] == 0 && !emitted[l] {
                free.push(Reverse((rank[j], j)));
            }
        }
    }
}

/// Tarjan's algorithm without recursion (a chain of referrers may be long):
/// each node's component number, and the number of components.
fn strongly_connected_components(n: usize, edges: &Edges<'_>) -> (Vec<usize>, usize) {
    const UNVISITED: usize = usize::MAX;
    let successors: Vec<Vec<usize>> = (0..n).map(|i| edges.from(i).collect()).collect();
    let mut index = vec![UNVISITED; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut component = vec![UNVISITED; n];
    let mut count = 0;
    let mut next_index = 0;
    // (node, how many of its successors were looked at)
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNVISITED {
            continue;
        }
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        calls.push((root, 0));
        while let Some(&(v, seen)) = calls.last() {
            if let Some(&w) = successors[v].get(seen) {
                calls.last_mut().expect("a call is running").1 += 1;
                if index[w] == UNVISITED {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                loop {
                    let w = stack.pop().expect("v is on the stack");
                    on_stack[w] = false;
                    component[w] = count;
                    if w == v {
                        break;
                    }
                }
                count += 1;
            }
        }
    }
    (component, count)
}
