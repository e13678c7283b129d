package dev.flotilla.vm.supervisor;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.flotilla.agent.protocol.client.AgentException;
import dev.flotilla.sandbox.protocol.SandboxError;
import dev.flotilla.sandbox.protocol.SandboxError.Kind;
import dev.flotilla.vm.VmException;
import java.util.Map;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.Test;

/** The kinds the supervisor's refusals carry, and that they survive the trip as reply text. */
class GuestErrorsTest {

  @Test
  void everyAgentCodeHasTheKindItsCallerShouldSee() {
    Map<AgentException.Code, Kind> expected = Map.ofEntries(
        Map.entry(AgentException.Code.INVALID_ARGUMENT, Kind.INVALID_ARGUMENT),
        Map.entry(AgentException.Code.NOT_FOUND, Kind.NOT_FOUND),
        Map.entry(AgentException.Code.ALREADY_EXISTS, Kind.ALREADY_EXISTS),
        Map.entry(AgentException.Code.RESOURCE_EXHAUSTED, Kind.RESOURCE_EXHAUSTED),
        Map.entry(AgentException.Code.PERMISSION_DENIED, Kind.FAILED_PRECONDITION),
        Map.entry(AgentException.Code.FAILED_PRECONDITION, Kind.FAILED_PRECONDITION),
        Map.entry(AgentException.Code.UNAVAILABLE, Kind.UNAVAILABLE),
        Map.entry(AgentException.Code.DEADLINE_EXCEEDED, Kind.UNAVAILABLE),
        Map.entry(AgentException.Code.CONNECTION_LOST, Kind.UNAVAILABLE),
        Map.entry(AgentException.Code.UNKNOWN, Kind.INTERNAL),
        Map.entry(AgentException.Code.UNIMPLEMENTED, Kind.INTERNAL),
        Map.entry(AgentException.Code.INTERNAL, Kind.INTERNAL));
    assertEquals(AgentException.Code.values().length, expected.size(), "a new agent code needs its kind here");
    expected.forEach((code, kind) -> assertEquals(kind, GuestErrors.kindOf(new AgentException(code, "x")), code.name()));
  }

  @Test
  void failuresOtherThanTheAgentsAreKindedToo() {
    assertEquals(Kind.UNAVAILABLE, GuestErrors.kindOf(new TimeoutException("ask timed out")));
    assertEquals(Kind.FAILED_PRECONDITION, GuestErrors.kindOf(new VmException("no cgroup freezer")));
    assertEquals(Kind.INTERNAL, GuestErrors.kindOf(new IllegalStateException("bug")));
  }

  @Test
  void aWrappedAgentErrorKeepsItsKindAndSaysWhatFailedThroughTheReplyText() {
    SandboxError e = GuestErrors.of("cannot read /nope",
        new CompletionException(new AgentException(AgentException.Code.NOT_FOUND, "no such file")));
    SandboxError back = SandboxError.fromReplyText(e.reply().getError().getMessage());
    assertEquals(Kind.NOT_FOUND, back.kind());
    assertEquals("cannot read /nope: no such file", back.getMessage());
  }
}
