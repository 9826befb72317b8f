//! Session slots. Every logged-in socket gets an `index`: the most recently released one if any
//! (a LIFO stack, like the original), else the next new number.

use parking_lot::Mutex;

#[derive(Default)]
pub struct SessionIndexes {
    inner: Mutex<(Vec<usize>, usize)>,
}

impl SessionIndexes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn acquire(&self) -> usize {
        let mut g = self.inner.lock();
        if let Some(i) = g.0.pop() {
            return i;
        }
        g.1 += 1;
        g.1 - 1
    }

    pub fn release(&self, index: usize) {
        self.inner.lock().0.push(index);
    }
}

/// A new session id (uuid v4, as the original).
pub fn new_session_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifo_reuse() {
        let s = SessionIndexes::new();
        assert_eq!((s.acquire(), s.acquire(), s.acquire()), (0, 1, 2));
        s.release(0);
        s.release(2);
        assert_eq!(s.acquire(), 2);
        assert_eq!(s.acquire(), 0);
        assert_eq!(s.acquire(), 3);
    }
}
