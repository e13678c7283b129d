package dev.flotilla.vm.supervisor;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.HypervisorCapabilities;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Command;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Report;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A supervisor stopped while its VM is starting (its node downed mid-create, PartitionIT's one-way
 * fault) must not leave that VM running: nobody would supervise it, and the node's fencing had no
 * record of it, so it ran beside its next incarnation until its lease ran out.
 */
class VmSupervisorStopDuringStartTest {
  private static ActorTestKit kit;

  @BeforeAll
  static void up() {
    kit = ActorTestKit.create();
  }

  @AfterAll
  static void down() {
    kit.shutdownTestKit();
  }

  @Test
  void aVmWhoseStartCompletesAfterItsSupervisorStoppedIsKilled() throws Exception {
    CountDownLatch entered = new CountDownLatch(1);
    CountDownLatch release = new CountDownLatch(1);
    CountDownLatch killed = new CountDownLatch(1);
    CompletableFuture<VmExit> exit = new CompletableFuture<>();
    Path dir = Files.createTempDirectory("vss");
    Hypervisor hv = new Hypervisor() {
      @Override public String driver() {
        return "slow";
      }

      @Override public HypervisorCapabilities capabilities() {
        return null;
      }

      @Override public Vm prepare(VmSpec spec) {
        VmHandle handle = new VmHandle("slow", spec.sandboxId(), spec.incarnation(), 4242, 0, spec.stateDir(), dir.resolve("s"), Map.of());
        return new Vm() {
          @Override public VmHandle handle() {
            return handle;
          }

          @Override public void start(Duration deadline) {
            entered.countDown();
            try {
              release.await(30, TimeUnit.SECONDS); // the driver's spawn, held by the test
            } catch (InterruptedException e) {
              Thread.currentThread().interrupt();
            }
          }

          @Override public AgentAddress agentAddress() {
            return new AgentAddress(dir.resolve("s"));
          }

          @Override public void pause() { }

          @Override public void resume() { }

          @Override public boolean isPaused() { return false; }

          @Override public void stop(Duration grace) {
            kill();
          }

          @Override public void kill() {
            killed.countDown();
            exit.complete(new VmExit(-1, 9, "killed", false));
          }

          @Override public CompletableFuture<VmExit> exitFuture() {
            return exit;
          }

          @Override public List<Long> pids() {
            return List.of();
          }

          @Override public void destroy() { }
        };
      }

      @Override public Optional<Vm> adopt(VmHandle handle) {
        return Optional.empty();
      }

      @Override public boolean fence(Duration wait) {
        return true;
      }

      @Override public void watchFreezes(dev.flotilla.vm.FreezeWatch watch) { }
    };
    TestProbe<Report> parent = kit.createTestProbe();
    VmSpec spec = new VmSpec("orphan", 1, 1, 64, 0, dir.resolve("state"), Map.of());
    ActorRef<Command> sup = kit.spawn(VmSupervisor.start(hv, spec, parent.getRef(), VmSupervisor.Settings.create(kit.system())));
    assertTrue(entered.await(30, TimeUnit.SECONDS), "the start began");
    // when: the supervisor stops (its entity passivated or its node downed) before the start completes
    kit.stop(sup);
    release.countDown();
    // then: the VM that finished starting is killed, not left to its lease
    assertTrue(killed.await(10, TimeUnit.SECONDS), "the orphaned VM was killed");
  }
}
