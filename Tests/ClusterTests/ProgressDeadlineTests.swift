// The progress deadline's rule (ProgressDeadline.overdue): who is late, after how long, and when nobody is.
import Testing
@testable import Cluster

@Suite struct ProgressDeadlineTests {
    @Test func derivedDeadlineIsTheFloorOrAMultipleOfTheWaitingRanksPace() throws {
        var d = ProgressDeadline()
        d.floor = 2
        d.factor = 10
        // Rank 2 last progressed at 0; ranks 0 and 1 reached their waits at 0.5 and 0.1 s: pace 0.5 s → 5 s.
        let last = [0.5, 0.1, 0.0]
        #expect(d.overdue(last: last, waiting: [0, 1], now: 4.9) == nil)
        let late = try #require(d.overdue(last: last, waiting: [0, 1], now: 5.1))
        #expect(late.rank == 2 && late.limit == 5)
        // A fast pace gives the floor.
        #expect(d.overdue(last: [0.01, 0.0, 0.0], waiting: [0, 2], now: 2.1)?.limit == 2)
    }

    @Test func rankZeroIsNeverLateByTheDerivedRule() {
        var d = ProgressDeadline()
        d.floor = 2
        // Rank 0 evaluates alone (tune's perplexity before training) while rank 1, done loading at 0.7 s, waits.
        #expect(d.overdue(last: [0.0, 0.7], waiting: [1], now: 1000) == nil)
        // A fixed deadline still times it.
        d.fixed = 3
        #expect(d.overdue(last: [0.0, 0.7], waiting: [1], now: 3.1)?.rank == 0)
    }

    @Test func nobodyIsLateWhileNoRankWaits() {
        var d = ProgressDeadline()
        d.floor = 1
        // All ranks computing (or all inside one collective they did not announce): no pace to go by.
        #expect(d.overdue(last: [0, 0.2, 0.4], waiting: [], now: 1000) == nil)
        // Waiting ranks are never the late one.
        #expect(d.overdue(last: [0, 0.2], waiting: [0, 1], now: 1000) == nil)
    }

    @Test func fixedDeadlineNamesTheWorkingRankWithTheOldestProgress() {
        var d = ProgressDeadline()
        d.fixed = 3
        #expect(d.overdue(last: [1.0, 0.0, 0.5], waiting: [], now: 2.9) == nil)
        #expect(d.overdue(last: [1.0, 0.0, 0.5], waiting: [], now: 3.1)?.rank == 1)
        #expect(d.overdue(last: [1.0, 0.0, 0.5], waiting: [1], now: 3.6)?.rank == 2)
    }
}
