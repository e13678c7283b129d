package dev.flotilla.vm;

import java.util.Optional;

/**
 * One sandbox runtime (a "VMM" in Kata's words): the process driver, QEMU, later Firecracker.
 *
 * <p>Modelled on Kata runtime-rs' {@code Hypervisor} trait, split in two: this factory, which
 * knows the driver and the host, and {@link Vm}, one running instance. Implementations block
 * (they spawn processes and wait on sockets), so callers run them on a blocking dispatcher,
 * never on an actor thread.
 */
public interface Hypervisor {

  /** The driver name users put in a sandbox spec: {@code process}, {@code qemu}. */
  String driver();

  /** What this driver can do on this host, including limits it cannot enforce here. */
  HypervisorCapabilities capabilities();

  /**
   * Creates the VM's state directory and everything needed to start it; nothing runs yet.
   *
   * @throws VmException if the spec cannot be run by this driver on this host
   */
  Vm prepare(VmSpec spec) throws VmException;

  /**
   * Re-attaches to a VM started earlier, possibly by another JVM on this host, from its saved
   * handle. Returns empty when the VM is gone or is not the one the handle names (pid reused,
   * other start time). The agent handshake, which checks sandbox id and incarnation, is the
   * caller's job: the driver only vouches for the process.
   */
  Optional<Vm> adopt(VmHandle handle);

  /**
   * The cluster downed this node: closes the driver's {@link SpawnGate} for good, once the spawns
   * in progress have saved their handles (waiting at most {@code wait}), so that no VM of this
   * driver starts here any more and the fencing finds every VM that did in the {@link VmDirectory}.
   *
   * @return false when a spawn was still in progress after {@code wait}
   */
  boolean fence(java.time.Duration wait);

  /**
   * Has the driver's {@link SpawnGate} refuse spawns while {@code watch} says this node may have
   * been frozen past its cluster's takeover ({@link SpawnGate#watch}).
   */
  void watchFreezes(FreezeWatch watch);

  /**
   * Ends what is left of a VM this node no longer wants (an older incarnation, a deleted
   * sandbox, one that died while no node watched it) and removes its state: for a node that
   * scans its {@link VmDirectory} after a restart. Blocking; safe on a VM that is already gone.
   * Drivers override it to also clean up what a half-dead VM leaves (processes, cgroups, taps).
   */
  default void reap(VmHandle handle) {
    adopt(handle).ifPresent(vm -> {
      vm.kill();
      try {
        vm.exitFuture().get(30, java.util.concurrent.TimeUnit.SECONDS);
      } catch (Exception e) {
        return; // still there: keep its state for the next attempt
      }
      vm.destroy();
    });
  }

  /**
   * Sandboxes that hold node-local state of this driver beyond their VMs' own directories (a
   * writable layer, an id range): what a node checks, after its VMs, for sandboxes deleted or moved.
   */
  default java.util.Set<String> sandboxesWithLocalState() {
    return java.util.Set.of();
  }

  /**
   * Removes a sandbox's node-local state once it is deleted or runs elsewhere. Only when no VM of
   * it runs here; blocking.
   */
  default void releaseSandbox(String sandboxId) {}

  /** This driver's VM templates on this node, if it has any (the qemu driver). */
  default java.util.Optional<TemplateCatalog> templates() {
    return java.util.Optional.empty();
  }

  /**
   * The node is stopping: the driver ends what it runs of its own (a VM template being built),
   * waiting at most {@code wait}. Sandboxes' VMs are not its own: they outlive the node, which
   * re-attaches to them when it comes back.
   */
  default void shutdown(java.time.Duration wait) {}
}
