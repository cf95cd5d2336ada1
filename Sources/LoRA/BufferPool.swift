// Activation buffers reused from one pass to the next: a training run calls the pass thousands of times with
// similar geometry, and fresh gigabyte-sized allocations cost page faults and zeroing every time.
import Foundation

/// An owned float buffer with a stable address (zeroed when first allocated; reused contents are stale).
final class Buf {
    let p: UnsafeMutablePointer<Float>
    let capacity: Int
    init(_ capacity: Int) {
        self.capacity = max(capacity, 1)
        p = .allocate(capacity: self.capacity)
        p.initialize(repeating: 0, count: self.capacity)
    }
    deinit { p.deallocate() }
}

final class BufferPool {
    private var free: [Buf] = []
    private var taken: [Buf] = []

    /// A buffer of at least `count` floats: the smallest free one that fits, else a new one.
    func take(_ count: Int) -> Buf {
        var best: Int?
        for (i, b) in free.enumerated() where b.capacity >= count && (best == nil || b.capacity < free[best!].capacity) {
            best = i
        }
        let b = best.map { free.remove(at: $0) } ?? Buf(count)
        taken.append(b)
        return b
    }

    /// Bytes of the buffers taken since the last `recycle`.
    var bytesTaken: Int { 4 * taken.reduce(0) { $0 + $1.capacity } }

    /// Makes every buffer taken since the last call free again; buffers left unused in that time are released.
    func recycle() {
        free = taken
        taken = []
    }
}
