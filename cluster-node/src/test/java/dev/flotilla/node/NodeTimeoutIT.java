package dev.flotilla.node;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.grpc.Status;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * A node whose entities cannot answer within the configured ask timeout: the API says
 * UNAVAILABLE (safe to retry) rather than hanging or failing otherwise.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class NodeTimeoutIT extends NodeScenarios {

  @BeforeAll
  void startNode() throws Exception {
    // 1 ms is shorter than any round trip to an entity, let alone a persist.
    boot(new TestNode(TestNode.shortTempDir(), null, ConfigFactory.parseString("flotilla.sandbox.ask-timeout = 1ms")));
  }

  @AfterAll
  void stopNode() {
    client = null; // nothing was created: deleteAll would only time out again
    tearDown(node);
  }

  @Test
  void askTimeoutsAreUnavailable() {
    var e = failure(() -> create(spec(), "timeout-1"));
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
    assertTrue(e.getStatus().getDescription().contains("retried"), e.getStatus().getDescription());
    // A read can beat the timeout (the scheduler's 10 ms tick rounds 1 ms up, and a warm entity
    // with an empty journal may answer NOT_FOUND that fast); it must never end otherwise, and
    // fresh entities (each one a journal recovery) do not all beat it.
    java.util.Map<Status.Code, Integer> codes = new java.util.EnumMap<>(Status.Code.class);
    for (int i = 0; i < 20; i++) {
      String id = String.format("sb-%016x", i);
      codes.merge(codeOf(() -> get(id)), 1, Integer::sum);
    }
    assertTrue(java.util.Set.of(Status.Code.UNAVAILABLE, Status.Code.NOT_FOUND).containsAll(codes.keySet()), codes.toString());
    assertTrue(codes.containsKey(Status.Code.UNAVAILABLE), "no get of 20 fresh sandboxes ran into the 1 ms timeout: " + codes);
  }
}
