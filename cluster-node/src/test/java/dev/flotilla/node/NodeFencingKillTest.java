package dev.flotilla.node;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.HypervisorCapabilities;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** Fencing kills a downed node's VMs in parallel: 27 one by one took 10 s, past the 3 s margin. */
class NodeFencingKillTest {
  @Test
  void killsManyVmsInParallel() {
    AtomicInteger kills = new AtomicInteger();
    Hypervisor slow = new Hypervisor() {
      @Override public String driver() {
        return "slow";
      }

      @Override public HypervisorCapabilities capabilities() {
        return null;
      }

      @Override public Vm prepare(VmSpec spec) {
        throw new UnsupportedOperationException();
      }

      @Override public boolean fence(Duration wait) {
        return true;
      }

      @Override public void watchFreezes(dev.flotilla.vm.FreezeWatch watch) { }

      @Override public Optional<Vm> adopt(VmHandle h) {
        return Optional.of(new Vm() {
          @Override public VmHandle handle() {
            return h;
          }

          @Override public void start(Duration deadline) { }

          @Override public AgentAddress agentAddress() {
            return null;
          }

          @Override public void pause() { }

          @Override public void resume() { }

          @Override public boolean isPaused() { return false; }

          @Override public void stop(Duration grace) { }

          @Override public void kill() {
            try {
              Thread.sleep(300); // a runc kill on a busy host
            } catch (InterruptedException e) {
              Thread.currentThread().interrupt();
            }
            kills.incrementAndGet();
          }

          @Override public CompletableFuture<VmExit> exitFuture() {
            return new CompletableFuture<>();
          }

          @Override public List<Long> pids() {
            return List.of();
          }

          @Override public void destroy() { }
        });
      }
    };
    List<VmHandle> handles = new ArrayList<>();
    for (int i = 0; i < 27; i++) {
      handles.add(new VmHandle("slow", "sb-" + i, 1, 100 + i, 0, Path.of("/tmp/x" + i), Path.of("/tmp/s" + i), Map.of()));
    }
    long t0 = System.nanoTime();
    assertEquals(27, NodeFencing.kill(handles, Map.of("slow", slow)));
    long ms = (System.nanoTime() - t0) / 1_000_000;
    assertEquals(27, kills.get());
    // one by one: 8.1 s; 16 at a time: 2 rounds
    assertTrue(ms < 3000, "took " + ms + " ms");
  }
}
