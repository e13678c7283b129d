package dev.flotilla.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.grpc.Status;
import java.net.ConnectException;
import java.time.Duration;
import org.junit.jupiter.api.Test;

class StatusMessagesTest {
  private static final StatusMessages.Call CALL = new StatusMessages.Call(
      "127.0.0.1:7070", "sb-9", Duration.ofSeconds(30), "sent the token from FLOTILLA_TOKEN");
  private static final StatusMessages.Call NO_ID = new StatusMessages.Call(
      "127.0.0.1:7070", null, Duration.ofSeconds(30), "sent the token from --token");

  private static void assertMaps(Status status, StatusMessages.Call call, int code, String line) {
    CliFailure f = StatusMessages.toFailure(status, call);
    assertEquals(line, f.getMessage());
    assertEquals(code, f.exitCode(), line);
  }

  @Test
  void refusals_exit_1_with_the_nodes_reason() {
    assertMaps(Status.NOT_FOUND.withDescription("whatever the node says"), CALL, 1,
        "sandbox sb-9 not found");
    assertMaps(Status.NOT_FOUND.withDescription("no such thing"), NO_ID, 1, "no such thing");
    assertMaps(Status.INVALID_ARGUMENT.withDescription("--memory must be at most 4096"), CALL, 1,
        "invalid argument: --memory must be at most 4096");
    assertMaps(Status.FAILED_PRECONDITION.withDescription("sandbox sb-9 is PAUSED: resume it"),
        CALL, 1, "sandbox sb-9 is PAUSED: resume it");
    assertMaps(Status.RESOURCE_EXHAUSTED.withDescription("tenant default has 10 of 10 sandboxes"),
        CALL, 1, "quota exceeded: tenant default has 10 of 10 sandboxes");
    assertMaps(Status.ALREADY_EXISTS.withDescription("request id r-1 was used for another spec"),
        NO_ID, 1, "already exists: request id r-1 was used for another spec");
    assertMaps(Status.UNAUTHENTICATED.withDescription("unknown token"), NO_ID, 1,
        "not authenticated: unknown token (sent the token from --token)");
    assertMaps(Status.UNIMPLEMENTED, CALL, 1,
        "the node at 127.0.0.1:7070 does not implement this call (is it an older version?)");
    assertMaps(Status.INTERNAL.withDescription("boom"), CALL, 1,
        "the node failed: internal: boom");
  }

  @Test
  void no_answer_exits_3() {
    assertMaps(Status.DEADLINE_EXCEEDED, CALL, 3,
        "no answer from the node at 127.0.0.1:7070 within 30s (raise --timeout, or retry)");
    assertMaps(Status.UNAVAILABLE.withDescription("shard not ready"), CALL, 3,
        "unavailable: shard not ready (safe to retry)");
    assertMaps(Status.UNAVAILABLE.withDescription("io exception")
            .withCause(new ConnectException("Connection refused: /127.0.0.1:7070")), CALL, 3,
        "cannot reach a node at 127.0.0.1:7070: connection refused (is `./flotilla node` running?)");
  }

  @Test
  void a_status_without_a_description_still_says_something() {
    assertMaps(Status.INVALID_ARGUMENT, CALL, 1,
        "invalid argument: the node rejected the request");
    assertMaps(Status.UNAVAILABLE, CALL, 3, "unavailable: the node could not answer (safe to retry)");
  }
}
