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
    assertEquals(Status.Code.UNAVAILABLE, codeOf(() -> get("sb-0000000000000000")));
  }
}
