package dev.flotilla.agent.guest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.flotilla.agent.protocol.client.AgentException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

/** Awaits agent calls in tests, with the fixture's deadline as an outer bound. */
final class Calls {
  private Calls() {}

  static <T> T get(CompletableFuture<T> f) throws Exception {
    try {
      return f.get(TestAgent.DEADLINE.toSeconds() + 5, TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      if (e.getCause() instanceof Exception c) throw c;
      throw e;
    }
  }

  static AgentException failure(AgentException.Code code, CompletableFuture<?> f) {
    ExecutionException e = assertThrows(ExecutionException.class,
        () -> f.get(TestAgent.DEADLINE.toSeconds() + 5, TimeUnit.SECONDS));
    AgentException ae = assertInstanceOf(AgentException.class, e.getCause());
    assertEquals(code, ae.code(), () -> "unexpected failure: " + ae);
    return ae;
  }
}
