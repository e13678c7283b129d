package dev.flotilla.node.grpc;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.flotilla.sandbox.protocol.SandboxError;
import io.grpc.Status;
import java.util.Map;
import java.util.concurrent.CompletionException;
import org.apache.pekko.grpc.GrpcServiceException;
import org.junit.jupiter.api.Test;

/** The one mapping from refusals to gRPC statuses, as refusals arrive at the edge: reply text inside a failed stage. */
class GrpcErrorsTest {

  /** What SandboxControl does with an entity's (or its VM supervisor's) error reply. */
  private static Status atTheEdge(String replyText) {
    GrpcServiceException e = GrpcErrors.convert(new CompletionException(SandboxError.fromReplyText(replyText)));
    return e.getStatus();
  }

  @Test
  void aPausedVmIsAFailedPreconditionNotAnInternalError() {
    // as VmSupervisor answers an exec while its VM is frozen
    String reply = SandboxError.precondition("the VM is paused; resume it first").doing("cannot exec").toReplyText();
    Status s = atTheEdge(reply);
    assertEquals(Status.Code.FAILED_PRECONDITION, s.getCode());
    assertEquals("cannot exec: the VM is paused; resume it first", s.getDescription());
  }

  @Test
  void everyKindHasItsStatus() {
    Map<SandboxError.Kind, Status.Code> expected = Map.of(
        SandboxError.Kind.INVALID_ARGUMENT, Status.Code.INVALID_ARGUMENT,
        SandboxError.Kind.NOT_FOUND, Status.Code.NOT_FOUND,
        SandboxError.Kind.ALREADY_EXISTS, Status.Code.ALREADY_EXISTS,
        SandboxError.Kind.FAILED_PRECONDITION, Status.Code.FAILED_PRECONDITION,
        SandboxError.Kind.RESOURCE_EXHAUSTED, Status.Code.RESOURCE_EXHAUSTED,
        SandboxError.Kind.UNAVAILABLE, Status.Code.UNAVAILABLE,
        SandboxError.Kind.INTERNAL, Status.Code.INTERNAL);
    assertEquals(SandboxError.Kind.values().length, expected.size());
    expected.forEach((kind, code) -> assertEquals(code, atTheEdge(new SandboxError(kind, "why").toReplyText()).getCode(), kind.name()));
  }

  @Test
  void textWithoutAKindIsInternal() {
    assertEquals(Status.Code.INTERNAL, atTheEdge("cannot exec: the VM is paused").getCode());
  }
}
