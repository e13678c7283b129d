package dev.flotilla.node;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import dev.flotilla.api.v1.CreateSandboxRequest;
import dev.flotilla.api.v1.DeleteSandboxRequest;
import dev.flotilla.api.v1.ListSandboxesRequest;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import dev.flotilla.sandbox.SandboxEntity;
import dev.flotilla.tenant.TenantEntity;
import io.grpc.Status;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.Done;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.pattern.StatusReply;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The tenant quota ledger on a real node: released on delete, also when the client gave up on the
 * delete; two racing creates with one request id leave one sandbox and one reservation; and the
 * reconciler (here every second, no grace) releases what each drift path leaves behind.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class TenantLedgerIT extends NodeScenarios {
  static final Duration ASK = Duration.ofSeconds(10);

  @BeforeAll
  void startNode() throws Exception {
    Path dataDir = TestNode.shortTempDir();
    boot(new TestNode(dataDir, null, ConfigFactory.parseString(
        "flotilla.tenants.reconcile { first-run = 1s, interval = 1s, grace = 0s }\n")));
  }

  @AfterAll
  void stopNode() {
    tearDown(node);
  }

  ClusterSharding sharding() {
    return ClusterSharding.get(node.node.system());
  }

  boolean ledgerHolds(String tenant, String id) {
    return await(sharding().entityRefFor(TenantEntity.ENTITY_KEY, tenant)
        .<Boolean>ask(r -> new TenantEntity.Holds(id, r), ASK));
  }

  List<TenantEntity.Reservation> reservations(String tenant) {
    return await(sharding().entityRefFor(TenantEntity.ENTITY_KEY, tenant)
        .<TenantEntity.Page>ask(r -> new TenantEntity.ListReservations("", 1000, r), ASK)).reservations();
  }

  Sandbox createAs(String tok, SandboxSpec spec, String requestId) {
    return await(client.createSandbox().addHeader("authorization", "Bearer " + tok)
        .invoke(CreateSandboxRequest.newBuilder().setSpec(spec).setRequestId(requestId).build()));
  }

  /** OK, or the code the call failed with. */
  static Status.Code outcome(Runnable call) {
    try {
      call.run();
      return Status.Code.OK;
    } catch (io.grpc.StatusRuntimeException e) {
      return e.getStatus().getCode();
    }
  }

  void awaitPhaseAs(String tok, String id, Phase phase) {
    Awaitility.await().atMost(READY).pollInterval(Duration.ofMillis(100)).until(() -> getAs(tok, id).getPhase() == phase);
  }

  /** Each test starts with the small tenant (quota: one sandbox) holding nothing. */
  @org.junit.jupiter.api.AfterEach
  void deleteTheSmallTenantsSandboxes() {
    for (Sandbox s : await(client.listSandboxes().addHeader("authorization", "Bearer " + TestNode.SMALL_TOKEN)
        .invoke(ListSandboxesRequest.newBuilder().setPageSize(1000).build())).getSandboxesList()) {
      deleteAs(TestNode.SMALL_TOKEN, s.getId());
    }
  }

  void deleteAs(String tok, String id) {
    await(client.deleteSandbox().addHeader("authorization", "Bearer " + tok).invoke(DeleteSandboxRequest.newBuilder().setId(id).build()));
  }

  @Test
  void aDeleteReleasesEvenWhenItsClientGaveUpWaiting() {
    String id = createAs(TestNode.SMALL_TOKEN, spec().toBuilder().addAllCommand(List.of("sh", "-c", "trap '' TERM; while :; do sleep 1; done")).build(), "").getId();
    awaitPhaseAs(TestNode.SMALL_TOKEN, id, Phase.RUNNING);
    assertEquals(Status.Code.RESOURCE_EXHAUSTED, outcome(() -> createAs(TestNode.SMALL_TOKEN, spec(), "")), "the quota of one is taken");
    // the main process ignores SIGTERM: the VM's stop takes its grace, far past this client's deadline
    var impatient = dev.flotilla.api.v1.SandboxServiceClient.create(org.apache.pekko.grpc.GrpcClientSettings
        .connectToServiceAt("127.0.0.1", node.node.grpcPort(), clientSystem).withTls(false).withDeadline(Duration.ofMillis(300)),
        clientSystem);
    Status.Code code = outcome(() -> await(impatient.deleteSandbox().addHeader("authorization", "Bearer " + TestNode.SMALL_TOKEN)
        .invoke(DeleteSandboxRequest.newBuilder().setId(id).build())));
    impatient.close();
    assertEquals(Status.Code.DEADLINE_EXCEEDED, code);
    // the node finishes the delete and gives the quota back on its own
    Awaitility.await("the timed-out delete completes and releases").atMost(READY).pollInterval(Duration.ofMillis(200))
        .until(() -> !ledgerHolds(TestNode.SMALL_TENANT, id));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> getAs(TestNode.SMALL_TOKEN, id)));
    String next = createAs(TestNode.SMALL_TOKEN, spec(), "").getId();
    deleteAs(TestNode.SMALL_TOKEN, next);
    assertTrue(!ledgerHolds(TestNode.SMALL_TENANT, next), "release on delete");
  }

  @Test
  void racingCreatesWithOneRequestIdAndDifferentSpecsLeaveOneSandboxAndOneReservation() {
    List<String> made = new ArrayList<>();
    for (int round = 0; round < 8; round++) {
      String requestId = "race-" + round + "-" + System.nanoTime();
      SandboxSpec a = spec().toBuilder().setMemoryMib(256).putLabels("side", "a").build();
      SandboxSpec b = spec().toBuilder().setMemoryMib(320).putLabels("side", "b").build();
      CompletableFuture<Status.Code> fa = CompletableFuture.supplyAsync(() -> outcome(() -> createAs(token, a, requestId)));
      CompletableFuture<Status.Code> fb = CompletableFuture.supplyAsync(() -> outcome(() -> createAs(token, b, requestId)));
      List<Status.Code> codes = List.of(fa.join(), fb.join());
      assertTrue(codes.contains(Status.Code.OK) && codes.contains(Status.Code.ALREADY_EXISTS),
          "one create wins, the other is told the id is taken: " + codes);
      Sandbox s = createAs(token, codes.get(0) == Status.Code.OK ? a : b, requestId); // the winner's retry answers the same
      made.add(s.getId());
      // the sandbox exists, is listed, and the ledger holds exactly it, with what the winner's spec reserves
      assertEquals(s.getId(), get(s.getId()).getId());
      var mine = reservations(LocalTenant.DEFAULT).stream().filter(r -> r.sandboxId().equals(s.getId())).toList();
      assertEquals(1, mine.size(), "one reservation for " + s.getId());
      assertEquals(s.getSpec().getMemoryMib(), mine.get(0).memoryMiB(), "the reservation is the created sandbox's: " + mine);
      assertEquals(s.getSpec().getLabelsMap(), mine.get(0).labels());
      assertTrue(await(client.listSandboxes().addHeader("authorization", bearer()).invoke(ListSandboxesRequest.newBuilder()
          .putLabelSelector("side", s.getSpec().getLabelsMap().get("side")).setPageSize(1000).build()))
          .getSandboxesList().stream().anyMatch(x -> x.getId().equals(s.getId())));
    }
    for (String id : made) deleteAs(token, id);
    for (String id : made) assertTrue(!ledgerHolds(LocalTenant.DEFAULT, id));
  }

  @Test
  void theReconcilerReleasesWhatACreateInDoubtLeft() {
    // What a create that ended UNAVAILABLE after its reservation leaves: a reservation, no sandbox.
    String id = dev.flotilla.sandbox.SandboxIds.forRequest(TestNode.SMALL_TENANT, "in-doubt-" + System.nanoTime());
    StatusReply<Boolean> reserved = await(sharding().entityRefFor(TenantEntity.ENTITY_KEY, TestNode.SMALL_TENANT)
        .<StatusReply<Boolean>>ask(r -> new TenantEntity.Reserve(new TenantEntity.Reservation(id, 1, 256, Map.of(),
            Instant.now()), r), ASK));
    assertTrue(reserved.isSuccess() && reserved.getValue());
    Awaitility.await("the reconciler releases a reservation whose sandbox was never created").atMost(READY)
        .pollInterval(Duration.ofMillis(200)).until(() -> !ledgerHolds(TestNode.SMALL_TENANT, id));
    // the quota came back, and the check made no sandbox entity
    String next = createAs(TestNode.SMALL_TOKEN, spec(), "").getId();
    deleteAs(TestNode.SMALL_TOKEN, next);
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> getAs(TestNode.SMALL_TOKEN, id)));
  }

  @Test
  void theReconcilerReleasesWhatADeleteWhoseReleaseWasLostLeft() {
    // What a node that died between a delete and its release leaves: a deleted sandbox, still reserved.
    String id = createAs(TestNode.SMALL_TOKEN, spec(), "").getId();
    awaitPhaseAs(TestNode.SMALL_TOKEN, id, Phase.RUNNING);
    CompletionStage<StatusReply<dev.flotilla.sandbox.SandboxView>> deleted = sharding().entityRefFor(SandboxEntity.ENTITY_KEY, id)
        .ask(r -> new SandboxEntity.Delete(TestNode.SMALL_TENANT, r), ASK);
    assertTrue(await(deleted).isSuccess());
    // the release never came: until the reconciler's pass the ledger may still hold it; then it must not
    Awaitility.await("the reconciler releases a reservation whose sandbox is deleted").atMost(READY)
        .pollInterval(Duration.ofMillis(200)).until(() -> !ledgerHolds(TestNode.SMALL_TENANT, id));
    String next = createAs(TestNode.SMALL_TOKEN, spec(), "").getId();
    deleteAs(TestNode.SMALL_TOKEN, next);
  }

  Sandbox getAs(String tok, String id) {
    return await(client.getSandbox().addHeader("authorization", "Bearer " + tok)
        .invoke(dev.flotilla.api.v1.GetSandboxRequest.newBuilder().setId(id).build()));
  }

  /** The default tenant's name. */
  static final class LocalTenant {
    static final String DEFAULT = "default";
  }
}
