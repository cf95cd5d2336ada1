// Activation buffers reused from one pass to the next: a training run calls the pass thousands of times with
// similar geometry, and fresh gigabyte-sized allocations cost page faults and zeroing every time. A pass takes
// its buffers in the same order every time, so the k-th request of a pass reuses the k-th buffer of the last
// one, grown when too small: memory stays at one pass's working set for the largest geometry seen.
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
    private var slots: [Buf] = []
    private var next = 0

    /// A buffer of at least `count` floats, valid until `recycle`.
    func take(_ count: Int) -> Buf {
        defer { next += 1 }
        if next == slots.count {
            slots.append(Buf(count))
        } else if slots[next].capacity < count {
            slots[next] = Buf(count)
        }
        return slots[next]
    }

    /// Bytes of the buffers taken since the last `recycle`.
    var bytesTaken: Int { 4 * slots.prefix(next).reduce(0) { $0 + $1.capacity } }

    /// Ends a pass: its buffers are handed out again, in the same order, by the next one.
    func recycle() { next = 0 }
}
