//! Groups of connections: rooms by name, plus the hub's own groups (everyone, per route).
//!
//! A group's member list is shared copy-on-write, so a broadcast takes a snapshot in O(1)
//! and fans out later, off the caller's thread, to exactly the members present when it was
//! called. Joins and leaves after that copy the list only while a snapshot is still in use.
//! Rooms are a two-way index (room → members, member → rooms); an empty room is deleted.

use std::collections::HashMap;
use std::sync::Arc;

use crate::conn::{ConnId, IdHash};

/// What a group holds: anything with a connection id.
pub trait Member {
    fn id(&self) -> ConnId;
}

/// A set of members with O(1) insert, remove, lookup and snapshot.
pub struct Group<M> {
    members: Arc<Vec<M>>,
    index: HashMap<ConnId, usize, IdHash>,
}

impl<M> Default for Group<M> {
    fn default() -> Self {
        Self { members: Arc::new(Vec::new()), index: HashMap::default() }
    }
}

impl<M: Member + Clone> Group<M> {
    /// Adds `m`; false if it was already a member.
    pub fn insert(&mut self, m: M) -> bool {
        let id = m.id();
        if self.index.contains_key(&id) {
            return false;
        }
        let members = Arc::make_mut(&mut self.members);
        self.index.insert(id, members.len());
        members.push(m);
        true
    }

    /// Removes the member with `id`; false if there was none.
    pub fn remove(&mut self, id: ConnId) -> bool {
        let Some(at) = self.index.remove(&id) else { return false };
        let members = Arc::make_mut(&mut self.members);
        members.swap_remove(at);
        if let Some(moved) = members.get(at) {
            self.index.insert(moved.id(), at);
        }
        if members.is_empty() && members.capacity() > 16 {
            *members = Vec::new();
        }
        true
    }

    pub fn get(&self, id: ConnId) -> Option<&M> {
        self.index.get(&id).map(|&i| &self.members[i])
    }

    pub fn contains(&self, id: ConnId) -> bool {
        self.index.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members as of now; later changes do not affect the snapshot.
    pub fn snapshot(&self) -> Arc<Vec<M>> {
        self.members.clone()
    }

    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.members.iter().map(Member::id)
    }
}

/// Named rooms with the reverse index from member to rooms.
pub struct Rooms<M> {
    rooms: HashMap<Arc<str>, Group<M>>,
    of_member: HashMap<ConnId, Vec<Arc<str>>, IdHash>,
}

impl<M> Default for Rooms<M> {
    fn default() -> Self {
        Self { rooms: HashMap::new(), of_member: HashMap::default() }
    }
}

impl<M: Member + Clone> Rooms<M> {
    /// Adds `m` to `room`, creating it; false if already there.
    pub fn join(&mut self, room: &str, m: M) -> bool {
        let id = m.id();
        let (name, group) = match self.rooms.get_key_value(room) {
            Some((k, _)) => {
                let k = k.clone();
                let g = self.rooms.get_mut(&k).expect("just found");
                (k, g)
            }
            None => {
                let k: Arc<str> = Arc::from(room);
                (k.clone(), self.rooms.entry(k).or_default())
            }
        };
        if !group.insert(m) {
            return false;
        }
        self.of_member.entry(id).or_default().push(name);
        true
    }

    /// Removes `id` from `room`, deleting the room when it empties; false if not a member.
    pub fn leave(&mut self, room: &str, id: ConnId) -> bool {
        let Some(group) = self.rooms.get_mut(room) else { return false };
        if !group.remove(id) {
            return false;
        }
        if group.is_empty() {
            self.rooms.remove(room);
        }
        if let Some(list) = self.of_member.get_mut(&id) {
            list.retain(|r| &**r != room);
            if list.is_empty() {
                self.of_member.remove(&id);
            }
        }
        true
    }

    /// Removes `id` from every room it is in.
    pub fn leave_all(&mut self, id: ConnId) {
        for room in self.of_member.remove(&id).unwrap_or_default() {
            if let Some(group) = self.rooms.get_mut(&room) {
                group.remove(id);
                if group.is_empty() {
                    self.rooms.remove(&room);
                }
            }
        }
    }

    pub fn get(&self, room: &str) -> Option<&Group<M>> {
        self.rooms.get(room)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.rooms.keys().map(|k| &**k)
    }

    pub fn rooms_of(&self, id: ConnId) -> &[Arc<str>] {
        self.of_member.get(&id).map_or(&[], Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct M(u64);
    impl Member for M {
        fn id(&self) -> ConnId {
            ConnId(self.0)
        }
    }

    #[test]
    fn group_insert_remove_keeps_index_consistent() {
        let mut g = Group::default();
        for i in 0..10 {
            assert!(g.insert(M(i)));
        }
        assert!(!g.insert(M(3)));
        for i in [0, 5, 9, 2] {
            assert!(g.remove(ConnId(i)));
        }
        assert!(!g.remove(ConnId(5)));
        let mut ids: Vec<u64> = g.ids().map(|c| c.0).collect();
        ids.sort();
        assert_eq!(ids, vec![1, 3, 4, 6, 7, 8]);
        for id in ids {
            assert_eq!(g.get(ConnId(id)), Some(&M(id)));
        }
    }

    #[test]
    fn snapshot_is_unaffected_by_later_changes() {
        let mut g = Group::default();
        g.insert(M(1));
        g.insert(M(2));
        let snap = g.snapshot();
        g.remove(ConnId(1));
        g.insert(M(3));
        assert_eq!(*snap, vec![M(1), M(2)]);
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn rooms_two_way_index_and_empty_rooms_vanish() {
        let mut r = Rooms::default();
        assert!(r.join("a", M(1)));
        assert!(r.join("a", M(2)));
        assert!(r.join("b", M(1)));
        assert!(!r.join("a", M(1)));
        assert_eq!(r.len(), 2);
        assert_eq!(r.rooms_of(ConnId(1)).len(), 2);
        assert!(r.leave("b", ConnId(1)));
        assert_eq!(r.len(), 1);
        assert!(!r.leave("b", ConnId(1)));
        r.leave_all(ConnId(1));
        r.leave_all(ConnId(2));
        assert!(r.is_empty());
        assert!(r.rooms_of(ConnId(1)).is_empty());
    }
}
