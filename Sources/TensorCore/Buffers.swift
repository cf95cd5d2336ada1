// The one activation buffer type and the one pool of them, shared by every pass (forward, gradient, LoRA).
import Foundation

/// An owned float buffer with a stable address (no copy-on-write), zeroed when allocated. `count` is its
/// capacity: a buffer handed out again by `BufferPool` may be larger than the last request, and its contents
/// are then stale.
public final class FloatBuffer {
    public let p: UnsafeMutablePointer<Float>
    public let count: Int
    public init(_ count: Int) {
        self.count = max(count, 1)
        p = .allocate(capacity: self.count)
        p.initialize(repeating: 0, count: self.count)
    }
    deinit { p.deallocate() }
    /// The first `n` values (all of them by default) as an array.
    public func array(_ n: Int? = nil) -> [Float] { Array(UnsafeBufferPointer(start: p, count: n ?? count)) }
}

/// Buffers reused from one pass to the next: a training run calls its pass thousands of times with similar
/// geometry, and fresh gigabyte-sized allocations cost page faults and zeroing every time. A pass takes its
/// buffers in the same order every time, so the k-th request of a pass reuses the k-th buffer of the last one,
/// grown when too small: memory stays at one pass's working set for the largest geometry seen.
public final class BufferPool {
    private var slots: [FloatBuffer] = []
    private var next = 0

    public init() {}

    /// A buffer of at least `count` floats, valid until `recycle`.
    public func take(_ count: Int) -> FloatBuffer {
        defer { next += 1 }
        if next == slots.count {
            slots.append(FloatBuffer(count))
        } else if slots[next].count < count {
            slots[next] = FloatBuffer(count)
        }
        return slots[next]
    }

    /// Bytes of the buffers taken since the last `recycle`.
    public var bytesTaken: Int { 4 * slots.prefix(next).reduce(0) { $0 + $1.count } }

    /// Ends a pass: its buffers are handed out again, in the same order, by the next one.
    public func recycle() { next = 0 }
}
