import Foundation
import Testing
@testable import Cluster
import CMPI
import CZeroMQ

@Test func singleRankWorldWithoutLauncher() throws {
    let comm = Communicator.world
    #expect(comm.size == 1 && comm.rank == 0 && !comm.usesMPI)
    var buf: [Float] = [1, 2, 3]
    try comm.allReduceSum(&buf)
    #expect(buf == [1, 2, 3])
}

/// A failed MPI call reads as one line naming the call and MPICH's text for the code (MPI_Error_string works
/// without MPI_Init, as this single-rank test process is).
@Test func mpiErrorNamesTheCall() {
    let e = MPIError(call: "MPI_Bcast", code: MPI_ERR_ROOT)
    #expect(e.description.hasPrefix("MPI_Bcast failed: "), "\(e)")
    #expect(e.message.lowercased().contains("root"), "\(e)")
    #expect(!e.description.contains("\n"))
    #expect(throws: e) { try Communicator.check(MPI_ERR_ROOT, "MPI_Bcast") }
    #expect(throws: Never.self) { try Communicator.check(MPI_SUCCESS, "MPI_Bcast") }
}

@Test func zeroMQRouterDealerRoundTrip() throws {
    #expect(ZContext.version.major == 4)
    let ctx = ZContext()
    let router = try ZSocket(ctx, type: ZMQ_ROUTER)
    try router.bind("inproc://roundtrip")
    let dealer = try ZSocket(ctx, type: ZMQ_DEALER)
    try dealer.connect("inproc://roundtrip")
    try dealer.send([Data("hello".utf8)])
    let got = try #require(try router.receive(timeoutMs: 2000))
    #expect(got.count == 2 && got[1] == Data("hello".utf8))
    try router.send([got[0], Data("world".utf8)])
    let back = try #require(try dealer.receive(timeoutMs: 2000))
    #expect(back == [Data("world".utf8)])
    #expect(try dealer.receive(timeoutMs: 10) == nil)
}
