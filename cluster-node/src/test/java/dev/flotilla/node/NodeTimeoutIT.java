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
    // A read can beat the timeout (the scheduler's 10 ms tick rounds 1 ms up), and a made-up id is
    // answered by the tenant's ledger without any sandbox entity being started: it is NOT_FOUND or,
    // when even the ledger does not answer in time (a tenant whose ledger must first recover from
    // the journal), UNAVAILABLE. It must never hang or end otherwise.
    java.util.Map<Status.Code, Integer> codes = new java.util.EnumMap<>(Status.Code.class);
    for (String tok : java.util.List.of(token, TestNode.OTHER_TOKEN, TestNode.SMALL_TOKEN)) {
      for (int i = 0; i < 10; i++) {
        String id = String.format("sb-%016x", i);
        codes.merge(codeOf(() -> await(client.getSandbox().addHeader("authorization", "Bearer " + tok)
            .invoke(dev.flotilla.api.v1.GetSandboxRequest.newBuilder().setId(id).build()))), 1, Integer::sum);
      }
    }
    assertTrue(java.util.Set.of(Status.Code.UNAVAILABLE, Status.Code.NOT_FOUND).containsAll(codes.keySet()), codes.toString());
  }
}
