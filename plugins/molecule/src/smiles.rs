//! SMILES as a graph, with the checks a chemist means by "valid": OpenSMILES
//! syntax, aromatic atoms only in rings, a Kekulé structure for every aromatic
//! system, and valences the elements allow (RDKit's rules: charged atoms take the
//! valences of their isoelectronic neighbour, N+ like C, O- like F). Bracket atoms
//! may be radicals (valence below the allowed maximum); organic-subset atoms get
//! implicit hydrogens up to their next allowed valence.
//!
//! Canonical SMILES, fingerprints and SMARTS matching come from the `chematic`
//! crates; this module decides validity (their parser accepts strings RDKit
//! rejects) and computes scaffolds and simple descriptors.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct Atom {
    /// Element symbol with its usual capitalisation (`C`, `Cl`, `Se`).
    pub element: String,
    pub aromatic: bool,
    pub charge: i32,
    /// Hydrogens written in brackets; `None` for organic-subset atoms (implicit).
    pub hcount: Option<u32>,
    pub bracket: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Single,
    Double,
    Triple,
    Quadruple,
    Aromatic,
}

impl Order {
    fn valence(self) -> u32 {
        match self {
            Order::Single | Order::Aromatic => 1,
            Order::Double => 2,
            Order::Triple => 3,
            Order::Quadruple => 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bond {
    pub a: usize,
    pub b: usize,
    pub order: Order,
}

/// A parsed, checked molecule.
#[derive(Debug, Clone, PartialEq)]
pub struct Mol {
    pub atoms: Vec<Atom>,
    pub bonds: Vec<Bond>,
    /// Implicit + bracket hydrogens per atom, after Kekulé assignment.
    pub hydrogens: Vec<u32>,
    /// Atoms in at least one ring.
    pub in_ring: Vec<bool>,
}

/// Why a string is not a valid molecule.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const ORGANIC: [&str; 10] = ["B", "C", "N", "O", "P", "S", "F", "Cl", "Br", "I"];
const AROMATIC_ORGANIC: [&str; 6] = ["b", "c", "n", "o", "p", "s"];
const AROMATIC_BRACKET: [&str; 8] = ["b", "c", "n", "o", "p", "s", "se", "as"];

/// Atomic number and standard atomic weight of the elements plinth knows by name.
const ELEMENTS: &[(&str, u32, f64)] = &[
    ("H", 1, 1.008),
    ("He", 2, 4.003),
    ("Li", 3, 6.94),
    ("Be", 4, 9.012),
    ("B", 5, 10.81),
    ("C", 6, 12.011),
    ("N", 7, 14.007),
    ("O", 8, 15.999),
    ("F", 9, 18.998),
    ("Ne", 10, 20.18),
    ("Na", 11, 22.99),
    ("Mg", 12, 24.305),
    ("Al", 13, 26.982),
    ("Si", 14, 28.085),
    ("P", 15, 30.974),
    ("S", 16, 32.06),
    ("Cl", 17, 35.45),
    ("Ar", 18, 39.95),
    ("K", 19, 39.098),
    ("Ca", 20, 40.078),
    ("Ti", 22, 47.867),
    ("V", 23, 50.942),
    ("Cr", 24, 51.996),
    ("Mn", 25, 54.938),
    ("Fe", 26, 55.845),
    ("Co", 27, 58.933),
    ("Ni", 28, 58.693),
    ("Cu", 29, 63.546),
    ("Zn", 30, 65.38),
    ("Ga", 31, 69.723),
    ("Ge", 32, 72.63),
    ("As", 33, 74.922),
    ("Se", 34, 78.971),
    ("Br", 35, 79.904),
    ("Kr", 36, 83.798),
    ("Rb", 37, 85.468),
    ("Sr", 38, 87.62),
    ("Ag", 47, 107.87),
    ("Cd", 48, 112.41),
    ("Sn", 50, 118.71),
    ("Sb", 51, 121.76),
    ("Te", 52, 127.6),
    ("I", 53, 126.9),
    ("Xe", 54, 131.29),
    ("Cs", 55, 132.91),
    ("Ba", 56, 137.33),
    ("Gd", 64, 157.25),
    ("Pt", 78, 195.08),
    ("Au", 79, 196.97),
    ("Hg", 80, 200.59),
    ("Tl", 81, 204.38),
    ("Pb", 82, 207.2),
    ("Bi", 83, 208.98),
];

fn element(symbol: &str) -> Option<(u32, f64)> {
    ELEMENTS.iter().find(|e| e.0 == symbol).map(|e| (e.1, e.2))
}

/// Allowed valences by atomic number for the main-group elements RDKit checks;
/// `None`: not checked (metals).
fn valences_of(z: i64) -> Option<&'static [u32]> {
    Some(match z {
        1 | 3 | 9 | 11 | 17 | 19 | 35 | 37 | 55 => &[1],
        2 | 10 | 18 | 36 | 54 => &[0],
        4 | 12 | 20 | 38 | 56 => &[2],
        5 | 13 => &[3],
        6 | 14 | 32 => &[4],
        7 => &[3],
        8 => &[2],
        15 | 33 => &[3, 5, 7],
        16 | 34 | 52 => &[2, 4, 6],
        53 => &[1, 3, 5],
        _ => return None,
    })
}

/// Valences an atom may have: its isoelectronic neighbour's for a charged atom.
fn allowed(atom: &Atom) -> Option<&'static [u32]> {
    let z = element(&atom.element)?.0 as i64;
    // Shift within the p-block only (N+ like C, O- like F, S+ like P, B- like C).
    let shifted = z - atom.charge as i64;
    let same_block = |a: i64, b: i64| {
        (5..=10).contains(&a) == (5..=10).contains(&b) || (13..=18).contains(&a) == (13..=18).contains(&b)
    };
    if atom.charge != 0 && (matches!(z, 5..=10 | 13..=18 | 31..=36 | 49..=54)) && same_block(z, shifted) {
        return valences_of(shifted);
    }
    if atom.charge != 0 {
        return None;
    }
    valences_of(z)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    atoms: Vec<Atom>,
    bonds: Vec<(usize, usize, Option<Order>)>,
}

fn err<T>(msg: String) -> Result<T, Invalid> {
    Err(Invalid(msg))
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn atom(&mut self) -> Result<Option<Atom>, Invalid> {
        let Some(c) = self.peek() else { return Ok(None) };
        if c == b'[' {
            return self.bracket().map(Some);
        }
        let two = std::str::from_utf8(&self.s[self.i..(self.i + 2).min(self.s.len())]).unwrap_or("");
        for sym in ["Cl", "Br"] {
            if two == sym {
                self.i += 2;
                return Ok(Some(Atom {
                    element: sym.into(),
                    aromatic: false,
                    charge: 0,
                    hcount: None,
                    bracket: false,
                }));
            }
        }
        let one = (c as char).to_string();
        if ORGANIC.contains(&one.as_str()) {
            self.i += 1;
            return Ok(Some(Atom { element: one, aromatic: false, charge: 0, hcount: None, bracket: false }));
        }
        if AROMATIC_ORGANIC.contains(&one.as_str()) {
            self.i += 1;
            return Ok(Some(Atom {
                element: one.to_uppercase(),
                aromatic: true,
                charge: 0,
                hcount: None,
                bracket: false,
            }));
        }
        if c == b'*' {
            return err(format!("wildcard atom `*` at position {} is not a molecule", self.i + 1));
        }
        Ok(None)
    }

    fn bracket(&mut self) -> Result<Atom, Invalid> {
        let start = self.i;
        let end = self.s[start..]
            .iter()
            .position(|&b| b == b']')
            .map(|p| start + p)
            .ok_or_else(|| Invalid(format!("bracket atom opened at position {} is never closed", start + 1)))?;
        let body = std::str::from_utf8(&self.s[start + 1..end]).map_err(|_| Invalid("non-ASCII SMILES".into()))?;
        self.i = end + 1;
        let b = body.as_bytes();
        let mut k = 0;
        while k < b.len() && b[k].is_ascii_digit() {
            k += 1; // isotope
        }
        let rest = &body[k..];
        let (symbol, aromatic) =
            if let Some(sym) = AROMATIC_BRACKET.iter().filter(|s| rest.starts_with(*s)).max_by_key(|s| s.len()) {
                let mut up = sym.to_string();
                up[..1].make_ascii_uppercase();
                (up, true)
            } else {
                let two = rest.get(..2).filter(|t| t.as_bytes()[1].is_ascii_lowercase() && element(t).is_some());
                let sym = two.or_else(|| rest.get(..1)).unwrap_or("");
                if element(sym).is_none() {
                    return err(format!("`[{body}]` does not start with an element symbol"));
                }
                (sym.to_string(), false)
            };
        let mut p = k + symbol.len();
        // Chirality.
        while p < b.len() && b[p] == b'@' {
            p += 1;
        }
        if p + 1 < b.len()
            && (body[p..].starts_with("TH")
                || body[p..].starts_with("AL")
                || body[p..].starts_with("SP")
                || body[p..].starts_with("TB")
                || body[p..].starts_with("OH"))
        {
            p += 2;
            while p < b.len() && b[p].is_ascii_digit() {
                p += 1;
            }
        }
        let mut hcount = 0;
        if p < b.len() && b[p] == b'H' {
            p += 1;
            hcount = 1;
            let d0 = p;
            while p < b.len() && b[p].is_ascii_digit() {
                p += 1;
            }
            if p > d0 {
                hcount = body[d0..p].parse().unwrap_or(0);
            }
        }
        let mut charge = 0i32;
        while p < b.len() && (b[p] == b'+' || b[p] == b'-') {
            let sign = if b[p] == b'+' { 1 } else { -1 };
            p += 1;
            let d0 = p;
            while p < b.len() && b[p].is_ascii_digit() {
                p += 1;
            }
            charge += sign * if p > d0 { body[d0..p].parse::<i32>().unwrap_or(1) } else { 1 };
        }
        if p < b.len() && b[p] == b':' {
            p += 1;
            while p < b.len() && b[p].is_ascii_digit() {
                p += 1;
            }
        }
        if p != b.len() {
            return err(format!("cannot read `[{body}]` (position {})", start + 1));
        }
        Ok(Atom { element: symbol, aromatic, charge, hcount: Some(hcount), bracket: true })
    }

    fn bond_symbol(&mut self) -> Option<Order> {
        let o = match self.peek()? {
            b'-' | b'/' | b'\\' => Order::Single,
            b'=' => Order::Double,
            b'#' => Order::Triple,
            b'$' => Order::Quadruple,
            b':' => Order::Aromatic,
            _ => return None,
        };
        self.i += 1;
        Some(o)
    }
}

/// Parses and checks a SMILES string.
pub fn parse(smiles: &str) -> Result<Mol, Invalid> {
    let smiles = smiles.trim();
    if smiles.is_empty() {
        return err("empty SMILES".into());
    }
    if !smiles.is_ascii() {
        return err("SMILES must be ASCII".into());
    }
    let mut p = Parser { s: smiles.as_bytes(), i: 0, atoms: Vec::new(), bonds: Vec::new() };
    let mut stack: Vec<usize> = Vec::new();
    let mut prev: Option<usize> = None;
    let mut pending: Option<Order> = None;
    let mut rings: std::collections::HashMap<u32, (usize, Option<Order>, usize)> = Default::default();
    let mut branch_empty = false;
    while let Some(c) = p.peek() {
        let pos = p.i + 1;
        match c {
            b'(' => {
                if prev.is_none() || pending.is_some() {
                    return err(format!("branch at position {pos} has no atom before it"));
                }
                stack.push(prev.unwrap_or(0));
                p.i += 1;
                branch_empty = true;
            }
            b')' => {
                if branch_empty || pending.is_some() {
                    return err(format!("empty branch or dangling bond before `)` at position {pos}"));
                }
                prev = Some(stack.pop().ok_or_else(|| Invalid(format!("unmatched `)` at position {pos}")))?);
                p.i += 1;
            }
            b'.' => {
                if pending.is_some() || prev.is_none() {
                    return err(format!("`.` at position {pos} follows a bond or nothing"));
                }
                if !stack.is_empty() {
                    return err(format!("`.` inside a branch at position {pos}"));
                }
                prev = None;
                p.i += 1;
            }
            b'-' | b'/' | b'\\' | b'=' | b'#' | b'$' | b':' => {
                if pending.is_some() || prev.is_none() {
                    return err(format!("bond symbol at position {pos} does not follow an atom"));
                }
                pending = p.bond_symbol();
            }
            b'0'..=b'9' | b'%' => {
                let Some(at) = prev else { return err(format!("ring closure at position {pos} has no atom")) };
                if branch_empty {
                    return err(format!("ring closure at position {pos} must follow an atom, not `(`"));
                }
                let n = if c == b'%' {
                    let d = smiles.get(p.i + 1..p.i + 3).filter(|d| d.bytes().all(|x| x.is_ascii_digit()));
                    let d = d.ok_or_else(|| Invalid(format!("`%` at position {pos} needs two digits")))?;
                    p.i += 3;
                    d.parse().unwrap_or(0)
                } else {
                    p.i += 1;
                    (c - b'0') as u32
                };
                match rings.remove(&n) {
                    None => {
                        rings.insert(n, (at, pending.take(), pos));
                    }
                    Some((other, o1, _)) => {
                        let o2 = pending.take();
                        if other == at {
                            return err(format!("ring closure {n} at position {pos} bonds an atom to itself"));
                        }
                        let order = match (o1, o2) {
                            (Some(a), Some(b)) if a != b => {
                                return err(format!("ring closure {n} has two different bond symbols"));
                            }
                            (a, b) => a.or(b),
                        };
                        if p.bonds.iter().any(|&(x, y, _)| (x, y) == (other, at) || (x, y) == (at, other)) {
                            return err(format!("ring closure {n} at position {pos} duplicates a bond"));
                        }
                        p.bonds.push((other, at, order));
                    }
                }
                branch_empty = false;
            }
            _ => {
                let Some(atom) = p.atom()? else {
                    return err(format!("unexpected `{}` at position {pos}", c as char));
                };
                let idx = p.atoms.len();
                p.atoms.push(atom);
                if let Some(q) = prev {
                    p.bonds.push((q, idx, pending.take()));
                } else if pending.is_some() {
                    return err(format!("bond before the first atom at position {pos}"));
                }
                prev = Some(idx);
                branch_empty = false;
            }
        }
    }
    if pending.is_some() {
        return err("SMILES ends with a bond".into());
    }
    if !stack.is_empty() {
        return err("unclosed branch `(`".into());
    }
    if let Some((n, (_, _, pos))) = rings.iter().next() {
        return err(format!("ring closure {n} opened at position {pos} is never closed"));
    }
    let atoms = p.atoms;
    // Unspecified bonds are aromatic between two aromatic atoms, single otherwise.
    let bonds: Vec<Bond> = p
        .bonds
        .into_iter()
        .map(|(a, b, o)| {
            let order =
                o.unwrap_or(if atoms[a].aromatic && atoms[b].aromatic { Order::Aromatic } else { Order::Single });
            Bond { a, b, order }
        })
        .collect();
    check(atoms, bonds)
}

/// Ring membership by bridge finding: an atom is in a ring when one of its bonds is not a bridge.
fn ring_atoms(n: usize, bonds: &[Bond]) -> Vec<bool> {
    let mut adj = vec![Vec::new(); n];
    for (k, b) in bonds.iter().enumerate() {
        adj[b.a].push((b.b, k));
        adj[b.b].push((b.a, k));
    }
    let (mut disc, mut low) = (vec![usize::MAX; n], vec![0; n]);
    let mut ring_bond = vec![true; bonds.len()];
    let mut time = 0;
    for root in 0..n {
        if disc[root] != usize::MAX {
            continue;
        }
        // Iterative DFS: (node, parent bond, next neighbour index).
        let mut stack = vec![(root, usize::MAX, 0usize)];
        disc[root] = time;
        low[root] = time;
        time += 1;
        while let Some(&mut (v, pb, ref mut next)) = stack.last_mut() {
            if *next < adj[v].len() {
                let (w, k) = adj[v][*next];
                *next += 1;
                if k == pb {
                    continue;
                }
                if disc[w] == usize::MAX {
                    disc[w] = time;
                    low[w] = time;
                    time += 1;
                    stack.push((w, k, 0));
                } else {
                    low[v] = low[v].min(disc[w]);
                }
            } else {
                stack.pop();
                if let Some(&(u, _, _)) = stack.last() {
                    low[u] = low[u].min(low[v]);
                    if low[v] > disc[u] {
                        ring_bond[pb] = false;
                    }
                }
            }
        }
    }
    let mut in_ring = vec![false; n];
    for (k, b) in bonds.iter().enumerate() {
        if ring_bond[k] {
            in_ring[b.a] = true;
            in_ring[b.b] = true;
        }
    }
    in_ring
}

fn check(mut atoms: Vec<Atom>, mut bonds: Vec<Bond>) -> Result<Mol, Invalid> {
    let n = atoms.len();
    charge_separate_n_oxides(&mut atoms, &mut bonds);
    let in_ring = ring_atoms(n, &bonds);
    for (i, a) in atoms.iter().enumerate() {
        if a.aromatic && !in_ring[i] {
            return err(format!("aromatic atom {} ({}) is not in a ring", i + 1, a.element.to_lowercase()));
        }
    }
    // Bond-order sum with aromatic bonds as single.
    let mut sum = vec![0u32; n];
    for b in &bonds {
        sum[b.a] += b.order.valence();
        sum[b.b] += b.order.valence();
    }
    // Which aromatic atoms need one double bond from their aromatic system.
    let mut needs = vec![false; n];
    for (i, a) in atoms.iter().enumerate() {
        if !a.aromatic {
            continue;
        }
        let s = sum[i] + a.hcount.unwrap_or(0);
        let Some(vals) = allowed(a) else { continue };
        needs[i] = if a.bracket {
            !vals.contains(&s) && vals.contains(&(s + 1))
        } else {
            // The first allowed valence that fits decides (RDKit: lowest valence for aromatic atoms).
            vals.iter().find(|&&v| v >= s).is_some_and(|&v| v > s)
        };
    }
    // A perfect matching of the needing atoms over aromatic bonds (Kekulé structure).
    let mut adj = vec![Vec::new(); n];
    for (k, b) in bonds.iter().enumerate() {
        if b.order == Order::Aromatic && needs[b.a] && needs[b.b] {
            adj[b.a].push((b.b, k));
            adj[b.b].push((b.a, k));
        }
    }
    let mut mate = vec![usize::MAX; n];
    let mut budget = 200_000usize;
    if !kekule(&needs, &adj, &mut mate, &mut budget) {
        let first = (0..n).find(|&i| needs[i] && mate[i] == usize::MAX).unwrap_or(0);
        return err(format!(
            "cannot kekulize the aromatic system around atom {} ({}): no alternating double bonds fit",
            first + 1,
            atoms.get(first).map_or(String::new(), |a| a.element.to_lowercase())
        ));
    }
    for b in bonds.iter_mut() {
        if b.order == Order::Aromatic {
            let double = mate[b.a] == b.b && mate[b.b] == b.a;
            if double {
                sum[b.a] += 1;
                sum[b.b] += 1;
            }
        }
    }
    let mut hydrogens = vec![0u32; n];
    for (i, a) in atoms.iter().enumerate() {
        let Some(vals) = allowed(a) else {
            hydrogens[i] = a.hcount.unwrap_or(0);
            continue;
        };
        let mut max = *vals.last().unwrap_or(&0);
        let s = sum[i] + a.hcount.unwrap_or(0);
        // RDKit's clean-up reads neutral N(=O)=O and N-oxides N(=O) as [N+][O-].
        if a.element == "N" && a.charge == 0 && s == 5 {
            let oxo = bonds
                .iter()
                .filter(|b| b.order == Order::Double && (b.a == i || b.b == i))
                .filter(|b| atoms[if b.a == i { b.b } else { b.a }].element == "O")
                .count();
            if oxo >= 1 {
                max = 5;
            }
        }
        if s > max {
            return err(format!(
                "atom {} ({}{}) has valence {s}, more than the {max} it allows",
                i + 1,
                a.element,
                match a.charge {
                    0 => String::new(),
                    c => format!(", charge {c:+}"),
                }
            ));
        }
        hydrogens[i] = match a.hcount {
            Some(h) => h,
            None => vals.iter().find(|&&v| v >= s).map_or(0, |v| v - s),
        };
    }
    Ok(Mol { atoms, bonds, hydrogens, in_ring })
}

/// Backtracking perfect matching, the most constrained atom first; molecules are
/// small, and `budget` bounds pathological inputs.
/// RDKit's clean-up of five-valent nitrogen before its valence check: a neutral
/// nitrogen with a double bond to a terminal neutral oxygen and five bonds in all
/// (a nitro group written `N(=O)=O`, an N-oxide written `n=O` in an aromatic
/// ring) becomes `[N+]-[O-]`, one oxygen per nitrogen.
fn charge_separate_n_oxides(atoms: &mut [Atom], bonds: &mut [Bond]) {
    let mut degree = vec![0usize; atoms.len()];
    let mut sum = vec![0u32; atoms.len()];
    for b in bonds.iter() {
        degree[b.a] += 1;
        degree[b.b] += 1;
        sum[b.a] += b.order.valence();
        sum[b.b] += b.order.valence();
    }
    for i in 0..atoms.len() {
        let a = &atoms[i];
        if a.element != "N" || a.charge != 0 {
            continue;
        }
        // Aromatic bonds count 1 here; an aromatic nitrogen's ring gives it one more.
        let total = sum[i] + a.hcount.unwrap_or(0) + u32::from(a.aromatic);
        if total != 5 {
            continue;
        }
        let oxygen = bonds.iter().position(|b| {
            let o = if b.a == i {
                b.b
            } else if b.b == i {
                b.a
            } else {
                return false;
            };
            b.order == Order::Double
                && atoms[o].element == "O"
                && atoms[o].charge == 0
                && degree[o] == 1
                && atoms[o].hcount.unwrap_or(0) == 0
        });
        if let Some(k) = oxygen {
            let o = if bonds[k].a == i { bonds[k].b } else { bonds[k].a };
            bonds[k].order = Order::Single;
            atoms[i].charge = 1;
            atoms[o].charge = -1;
        }
    }
}

fn kekule(needs: &[bool], adj: &[Vec<(usize, usize)>], mate: &mut [usize], budget: &mut usize) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let mut best: Option<(usize, usize)> = None;
    for i in 0..needs.len() {
        if needs[i] && mate[i] == usize::MAX {
            let free = adj[i].iter().filter(|(j, _)| mate[*j] == usize::MAX).count();
            if free == 0 {
                return false;
            }
            if best.is_none_or(|(_, f)| free < f) {
                best = Some((i, free));
            }
        }
    }
    let Some((i, _)) = best else { return true };
    for &(j, _) in &adj[i] {
        if mate[j] == usize::MAX {
            mate[i] = j;
            mate[j] = i;
            if kekule(needs, adj, mate, budget) {
                return true;
            }
            mate[i] = usize::MAX;
            mate[j] = usize::MAX;
        }
    }
    false
}

impl Mol {
    /// Heavy (non-hydrogen) atoms.
    pub fn heavy_atoms(&self) -> usize {
        self.atoms.iter().filter(|a| a.element != "H").count()
    }

    /// Average molecular weight from standard atomic weights, hydrogens included.
    pub fn molecular_weight(&self) -> f64 {
        let h = element("H").map_or(1.008, |e| e.1);
        self.atoms
            .iter()
            .zip(&self.hydrogens)
            .map(|(a, &n)| element(&a.element).map_or(0.0, |e| e.1) + n as f64 * h)
            .sum()
    }

    /// Ring count (cyclomatic number: bonds - atoms + fragments).
    pub fn rings(&self) -> usize {
        let mut parent: Vec<usize> = (0..self.atoms.len()).collect();
        fn find(p: &mut [usize], x: usize) -> usize {
            let mut r = x;
            while p[r] != r {
                r = p[r];
            }
            p[x] = r;
            r
        }
        for b in &self.bonds {
            let (ra, rb) = (find(&mut parent, b.a), find(&mut parent, b.b));
            parent[ra] = rb;
        }
        let fragments = (0..self.atoms.len()).filter(|&i| find(&mut parent, i) == i).count();
        (self.bonds.len() + fragments).saturating_sub(self.atoms.len())
    }

    /// Lipinski donors: N and O atoms carrying hydrogen (as hydrogen count on N/O).
    pub fn h_donors(&self) -> usize {
        self.atoms.iter().zip(&self.hydrogens).filter(|(a, &h)| (a.element == "N" || a.element == "O") && h > 0).count()
    }

    /// Lipinski acceptors: N and O atoms.
    pub fn h_acceptors(&self) -> usize {
        self.atoms.iter().filter(|a| a.element == "N" || a.element == "O").count()
    }

    /// The Bemis–Murcko framework: ring systems and the chains linking them, with
    /// atoms double-bonded to them kept (as RDKit does); empty for acyclic molecules.
    /// Returned as SMILES (not canonical; canonicalise it to compare).
    pub fn murcko_smiles(&self) -> String {
        let n = self.atoms.len();
        let mut keep = vec![true; n];
        let mut degree = vec![0usize; n];
        for b in &self.bonds {
            degree[b.a] += 1;
            degree[b.b] += 1;
        }
        // Peel terminal non-ring atoms until only rings and the linkers between
        // them remain (the frame).
        loop {
            let mut changed = false;
            for i in 0..n {
                if !keep[i] || self.in_ring[i] || degree[i] > 1 {
                    continue;
                }
                keep[i] = false;
                changed = true;
                for b in &self.bonds {
                    if b.a == i && keep[b.b] {
                        degree[b.b] -= 1;
                    } else if b.b == i && keep[b.a] {
                        degree[b.a] -= 1;
                    }
                }
                degree[i] = 0;
            }
            if !changed {
                break;
            }
        }
        // As RDKit's MurckoDecompose: an atom joined by a double bond to a frame
        // atom stays (a ring or linker C=O, a sulfone's oxygens, an exocyclic C=C),
        // without its own other substituents.
        let frame = keep.clone();
        for b in self.bonds.iter().filter(|b| b.order == Order::Double) {
            if frame[b.a] != frame[b.b] {
                keep[if frame[b.a] { b.b } else { b.a }] = true;
            }
        }
        if !self.in_ring.iter().zip(&keep).any(|(r, k)| *r && *k) {
            return String::new();
        }
        self.write_subgraph(&keep)
    }

    /// A (non-canonical) SMILES of the atoms in `keep`, hydrogens filled in where
    /// substituents were cut (see `atom_text`).
    fn write_subgraph(&self, keep: &[bool]) -> String {
        let n = self.atoms.len();
        let mut adj: Vec<Vec<(usize, Order)>> = vec![Vec::new(); n];
        for b in &self.bonds {
            if keep[b.a] && keep[b.b] {
                adj[b.a].push((b.b, b.order));
                adj[b.b].push((b.a, b.order));
            }
        }
        let mut lost = vec![0u32; n];
        for b in &self.bonds {
            if keep[b.a] != keep[b.b] {
                lost[if keep[b.a] { b.a } else { b.b }] += b.order.valence();
            }
        }
        let mut visited = vec![false; n];
        let mut ring_ids: std::collections::HashMap<(usize, usize), u32> = Default::default();
        let mut next_ring = 1u32;
        // First pass: DFS tree, to find ring-closure bonds.
        let mut order = Vec::new();
        let mut parent = vec![usize::MAX; n];
        let mut closures: Vec<(usize, usize, Order)> = Vec::new();
        let mut seen = vec![false; n];
        for root in 0..n {
            if !keep[root] || seen[root] {
                continue;
            }
            let mut stack = vec![root];
            while let Some(v) = stack.pop() {
                if seen[v] {
                    continue;
                }
                seen[v] = true;
                order.push(v);
                for &(w, o) in adj[v].iter().rev() {
                    if !seen[w] {
                        parent[w] = v;
                        stack.push(w);
                    } else if parent[v] != w
                        && !closures.iter().any(|c| (c.0 == w && c.1 == v) || (c.0 == v && c.1 == w))
                    {
                        closures.push((w, v, o));
                    }
                }
            }
        }
        // Tree edges are (parent[w], w) for w whose parent was set when it was first seen;
        // rebuild children lists consistent with `parent`.
        let mut children: Vec<Vec<(usize, Order)>> = vec![Vec::new(); n];
        for &v in &order {
            let p = parent[v];
            if p != usize::MAX {
                let o = adj[v].iter().find(|(w, _)| *w == p).map_or(Order::Single, |x| x.1);
                children[p].push((v, o));
            }
        }
        // Drop "closures" that are actually tree edges.
        closures.retain(|&(a, b, _)| parent[a] != b && parent[b] != a);
        let atom_text = |i: usize| {
            let a = &self.atoms[i];
            let sym = if a.aromatic { a.element.to_lowercase() } else { a.element.clone() };
            // An aromatic nitrogen that lost a substituent takes a hydrogen; a charged
            // bracket atom takes one per bond lost; an uncharged aliphatic bracket atom
            // of the organic subset is written plain (its chirality dropped, its
            // hydrogens implicit), as RDKit's scaffold without chirality has it.
            let organic = ["B", "C", "N", "O", "P", "S", "F", "Cl", "Br", "I"].contains(&a.element.as_str());
            let plain = a.bracket && organic && a.charge == 0 && !a.aromatic;
            let needs_h = (a.aromatic && a.element == "N" && lost[i] > 0 && a.hcount.is_none())
                || (a.bracket && a.charge != 0 && lost[i] > 0);
            if (a.bracket && !plain) || needs_h {
                let h = a.hcount.unwrap_or(0) + if needs_h { lost[i] } else { 0 };
                let hs = match h {
                    0 => String::new(),
                    1 => "H".into(),
                    k => format!("H{k}"),
                };
                let ch = match a.charge {
                    0 => String::new(),
                    1 => "+".into(),
                    -1 => "-".into(),
                    c => format!("{c:+}"),
                };
                format!("[{sym}{hs}{ch}]")
            } else {
                sym
            }
        };
        let bond_text = |o: Order| match o {
            Order::Single | Order::Aromatic => "",
            Order::Double => "=",
            Order::Triple => "#",
            Order::Quadruple => "$",
        };
        let mut out = String::new();
        #[allow(clippy::too_many_arguments)]
        fn emit(
            v: usize,
            out: &mut String,
            children: &[Vec<(usize, Order)>],
            closures: &[(usize, usize, Order)],
            ring_ids: &mut std::collections::HashMap<(usize, usize), u32>,
            next_ring: &mut u32,
            visited: &mut [bool],
            atom_text: &dyn Fn(usize) -> String,
            bond_text: &dyn Fn(Order) -> &'static str,
        ) {
            visited[v] = true;
            out.push_str(&atom_text(v));
            for &(a, b, o) in closures {
                if a == v || b == v {
                    let key = (a.min(b), a.max(b));
                    if let Some(id) = ring_ids.get(&key) {
                        out.push_str(bond_text(o));
                        out.push_str(&ring_label(*id));
                    } else {
                        let id = *next_ring;
                        *next_ring += 1;
                        ring_ids.insert(key, id);
                        out.push_str(&ring_label(id));
                    }
                }
            }
            let kids = &children[v];
            for (k, &(w, o)) in kids.iter().enumerate() {
                let last = k + 1 == kids.len();
                if !last {
                    out.push('(');
                }
                out.push_str(bond_text(o));
                emit(w, out, children, closures, ring_ids, next_ring, visited, atom_text, bond_text);
                if !last {
                    out.push(')');
                }
            }
        }
        fn ring_label(id: u32) -> String {
            if id < 10 {
                id.to_string()
            } else {
                format!("%{id:02}")
            }
        }
        for &root in order.iter().filter(|&&v| parent[v] == usize::MAX) {
            if !out.is_empty() {
                out.push('.');
            }
            emit(
                root,
                &mut out,
                &children,
                &closures,
                &mut ring_ids,
                &mut next_ring,
                &mut visited,
                &atom_text,
                &bond_text,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_molecules_parse() {
        for s in [
            "CCO",
            "c1ccccc1",
            "C1=CC=CC=C1",
            "c1cc[nH]c1",
            "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
            "O=c1ccnc2sccn12",
            "C[N+](C)(C)C",
            "[O-][N+](=O)c1ccccc1",
            "CC(=O)[O-].[Na+]",
            "[CH3]",
            "OS(=O)(=O)O",
            "P(=O)(O)(O)O",
            "C1CC2CCC1C2",
            "c1ccc2ccccc2c1",
            "N#N",
            "[2H]C",
            "C%10CC%10",
            "F/C=C/F",
            "C[C@H](N)C(=O)O",
            "c1ccsc1",
            "O=C(c1ccccc1)N1CCOCC1",
            "[nH]1cccc1",
            "C[n+]1ccccc1",
            "Cc1ccc2[nH]c(=O)oc2c1",
            "CCN(=O)=O",
            // ESOL's minoxidil: an N-oxide written n=O, which RDKit reads as [n+][O-].
            "Nc1cc(nc(N)n1=O)N2CCCCC2",
            "O=n1ccccc1",
        ] {
            assert!(parse(s).is_ok(), "{s}: {:?}", parse(s).err());
        }
        let m = parse("Nc1cc(nc(N)n1=O)N2CCCCC2").expect("minoxidil");
        assert_eq!(m.atoms.iter().map(|a| a.charge).filter(|&c| c != 0).collect::<Vec<_>>(), [1, -1]);
    }

    #[test]
    fn invalid_molecules_say_why() {
        for (s, why) in [
            ("C(C)(C)(C)(C)C", "valence 5"),
            ("c1cccc1", "kekulize"),
            ("C1CC", "never closed"),
            ("CC(", "unclosed"),
            ("CC()C", "empty branch"),
            ("Oo", "not in a ring"),
            ("ClC(Cl)Cl)", "unmatched"),
            ("C=", "ends with a bond"),
            ("N#CC#N(C)", "valence 4"),
            ("[Xx]", "element"),
            ("C11", "itself"),
            ("", "empty"),
            ("CC[", "never closed"),
            ("C=1CC#1", "two different"),
            ("C(=1CCCCC1)N", "must follow an atom"),
            ("[Cs@H](C)C", "valence 3"),
        ] {
            let e = parse(s).expect_err(s).0;
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn descriptors_and_hydrogens() {
        let m = parse("CC(=O)Oc1ccccc1C(=O)O").expect("aspirin");
        assert_eq!(m.heavy_atoms(), 13);
        assert!((m.molecular_weight() - 180.159).abs() < 0.01, "{}", m.molecular_weight());
        assert_eq!(m.rings(), 1);
        assert_eq!((m.h_donors(), m.h_acceptors()), (1, 4));
    }

    #[test]
    fn murcko_keeps_rings_linkers_and_exocyclic_double_bonds() {
        let scaffold = |s: &str| parse(s).expect(s).murcko_smiles();
        assert_eq!(scaffold("CCCC"), "");
        assert_eq!(scaffold("Cc1ccccc1"), "c1ccccc1");
        let s = scaffold("Cc1cc(Oc2nccc(CCC)c2)ccc1");
        let m = parse(&s).expect("scaffold parses");
        assert_eq!((m.heavy_atoms(), m.rings()), (13, 2), "{s}");
        let s = scaffold("O=C1CCCC1CC");
        assert!(parse(&s).expect("valid").atoms.iter().any(|a| a.element == "O"), "exocyclic =O kept: {s}");
        // A substituted aromatic nitrogen keeps its hydrogen in the scaffold.
        let s = scaffold("Cn1ccc2ccccc21");
        assert!(s.contains("[nH]") && parse(&s).is_ok(), "{s}");
    }
}
