package dev.flotilla.chaos;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.RestartPolicy;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import dev.flotilla.node.local.LocalCluster;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;

/**
 * A single node on its embedded H2 journal (what {@code ./flotilla node} runs) is SIGKILLed right
 * after creates and deletes it acknowledged, 10 times in the ci profile (40 in the large one;
 * {@code -Ddurability.rounds=N}): after each restart every acknowledged create exists and every
 * acknowledged delete is gone. A round is ~7 s (the node's restart), so CI's budget keeps it at 10.
 */
class EmbeddedJournalDurabilityIT {
  static final int ROUNDS = Integer.getInteger("durability.rounds", Profile.current().name().equals("large") ? 40 : 10);
  static final int CREATES = 3;
  static final Duration CALL = Duration.ofSeconds(30);

  @Test
  void acknowledgedChangesSurviveAKillOfTheNode() throws Exception {
    // The sandboxes' VMs end at once (main process `true`, never restarted): the node's work is the journal's.
    SandboxSpec spec = SandboxSpec.newBuilder().setDriver("process").setMemoryMib(64).setRestartPolicy(RestartPolicy.NEVER)
        .addCommand("true").build();
    Set<String> created = new TreeSet<>();
    Set<String> deleted = new TreeSet<>();
    List<String> lost = new ArrayList<>();
    long restartNanos = 0;
    try (LocalCluster cluster = LocalCluster.builder().nodes(1).embeddedJournal().start()) {
      for (int round = 1; round <= ROUNDS; round++) {
        try (ChaosClient client = new ChaosClient(cluster.node(1).grpcAddress(), cluster.token())) {
          // One acknowledged delete of an earlier round's sandbox, then acknowledged creates, then the kill at once.
          if (!created.isEmpty()) {
            String victim = created.iterator().next();
            client.delete(victim, CALL);
            created.remove(victim);
            deleted.add(victim);
          }
          for (int i = 0; i < CREATES; i++) created.add(client.create(spec, "", CALL).getId());
        }
        cluster.kill(1);
        long t0 = System.nanoTime();
        cluster.restart(1);
        restartNanos += System.nanoTime() - t0;
        try (ChaosClient client = new ChaosClient(cluster.node(1).grpcAddress(), cluster.token())) {
          Set<String> listed = new TreeSet<>();
          for (Sandbox s : client.list(CALL)) listed.add(s.getId());
          for (String id : created) {
            if (!listed.contains(id)) lost.add("round " + round + ": acknowledged create of " + id + " lost");
          }
          for (String id : deleted) {
            try {
              Sandbox back = client.get(id, CALL);
              if (back.getPhase() != Phase.DELETED) lost.add("round " + round + ": acknowledged delete of " + id + " undone: " + back.getPhase());
            } catch (StatusRuntimeException e) {
              if (e.getStatus().getCode() != Status.Code.NOT_FOUND) throw e;
            }
          }
        }
      }
      System.out.printf("durability: %d rounds of SIGKILL after %d creates and 1 delete each: %d acknowledged creates and %d"
              + " deletes checked, %d lost; node restart to ready p-avg %.1f s%n",
          ROUNDS, CREATES, created.size() + deleted.size(), deleted.size(), lost.size(), restartNanos / 1e9 / ROUNDS);
    }
    assertEquals(List.of(), lost);
    assertTrue(created.size() >= ROUNDS * (CREATES - 1));
  }
}
