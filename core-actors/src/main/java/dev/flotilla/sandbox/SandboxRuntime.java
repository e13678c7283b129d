package dev.flotilla.sandbox;

import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.supervisor.MainLogs;
import dev.flotilla.vm.supervisor.VmSupervisor;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.MainProcess;
import org.apache.pekko.actor.typed.Behavior;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.pubsub.Topic;

/**
 * What a sandbox entity needs from the node it runs on: the drivers, where VM state lives, who
 * this node and host are, and the tunables. Built once per node by its {@code Main}.
 *
 * @param drivers hypervisors by driver name ("process", "qemu")
 * @param vmRoot directory under which each VM gets {@code <sandbox>-<incarnation>/}
 * @param nodeAddress this node's cluster address, host:port
 * @param hostId identity of the physical host: only the same host may re-attach to a VM
 * @param vmLauncher makes the VM supervisor child of an incarnation
 * @param events the cluster-wide topic of {@link SandboxChanged}
 * @param handOffStopsVm whether a sandbox handed off by sharding stops its VM: true when another
 *     node takes it over (a drain, or a node leaving a cluster), false when this node is alone and
 *     will re-attach after a restart
 * @param mainLogs where the sandboxes' main processes log on this node (their agent-side rings are
 *     as large as one log)
 * @param blockingDispatcher config path of the dispatcher for file work (reading logs)
 * @param askTimeout how long an API call waits for the entity: a call on a CREATING sandbox waits
 *     at most this long for its VM
 * @param releaseQuota gives a deleted sandbox's quota back to its tenant (tenant, sandbox id)
 * @param snapshots where suspended sandboxes' snapshots go; null: {@code snapshots} beside {@code vmRoot}
 */
public record SandboxRuntime(
    Map<String, Hypervisor> drivers,
    Path vmRoot,
    String nodeAddress,
    String hostId,
    VmLauncher vmLauncher,
    RestartSettings restart,
    Duration vmCallTimeout,
    Duration stopGrace,
    int pidsLimit,
    ActorRef<Topic.Command<SandboxChanged>> events,
    java.util.function.BooleanSupplier handOffStopsVm,
    MainLogs mainLogs,
    String blockingDispatcher,
    Duration askTimeout,
    java.util.function.BiConsumer<String, String> releaseQuota,
    SnapshotStore snapshots) {

  public SandboxRuntime {
    drivers = Map.copyOf(drivers);
    if (snapshots == null && vmRoot != null) {
      snapshots = new SnapshotStore(vmRoot.toAbsolutePath().normalize().resolveSibling("snapshots"));
    }
    askTimeout = askTimeout == null ? Duration.ofSeconds(10) : askTimeout;
    releaseQuota = releaseQuota == null ? (tenant, id) -> { } : releaseQuota;
  }

  /** Without lifetimes' extras: the default ask timeout, and no quota release from the entity. */
  public SandboxRuntime(Map<String, Hypervisor> drivers, Path vmRoot, String nodeAddress, String hostId, VmLauncher vmLauncher,
      RestartSettings restart, Duration vmCallTimeout, Duration stopGrace, int pidsLimit,
      ActorRef<Topic.Command<SandboxChanged>> events, java.util.function.BooleanSupplier handOffStopsVm, MainLogs mainLogs,
      String blockingDispatcher) {
    this(drivers, vmRoot, nodeAddress, hostId, vmLauncher, restart, vmCallTimeout, stopGrace, pidsLimit, events, handOffStopsVm,
        mainLogs, blockingDispatcher, null, null, null);
  }

  /** With lifetimes' extras, and the default snapshot store. */
  public SandboxRuntime(Map<String, Hypervisor> drivers, Path vmRoot, String nodeAddress, String hostId, VmLauncher vmLauncher,
      RestartSettings restart, Duration vmCallTimeout, Duration stopGrace, int pidsLimit,
      ActorRef<Topic.Command<SandboxChanged>> events, java.util.function.BooleanSupplier handOffStopsVm, MainLogs mainLogs,
      String blockingDispatcher, Duration askTimeout, java.util.function.BiConsumer<String, String> releaseQuota) {
    this(drivers, vmRoot, nodeAddress, hostId, vmLauncher, restart, vmCallTimeout, stopGrace, pidsLimit, events, handOffStopsVm,
        mainLogs, blockingDispatcher, askTimeout, releaseQuota, null);
  }

  /**
   * Makes the behavior of the child that owns an incarnation's VM. Production uses
   * {@link #supervised}; entity unit tests substitute a recorder to drive the reports themselves.
   */
  public interface VmLauncher {
    /**
     * @param main the sandbox's main process, null for none
     * @param paused the sandbox is PAUSED: its VM is to be (or stay) frozen until resumed; the
     *     entity's phase is the one account of that state, the supervisor follows it
     */
    Behavior<VmSupervisorProtocol.Command> start(Hypervisor hv, VmSpec spec, MainProcess main, boolean paused,
        ActorRef<VmSupervisorProtocol.Report> parent);

    Behavior<VmSupervisorProtocol.Command> adopt(Hypervisor hv, VmHandle handle, MainProcess main, boolean paused,
        ActorRef<VmSupervisorProtocol.Report> parent);

    /** How long a VM that hears nothing from its node lives on (its agent's lease); zero: no lease. */
    default Duration lease() {
      return Duration.ZERO;
    }
  }

  /** The real thing: a {@link VmSupervisor} per incarnation. */
  public static VmLauncher supervised(VmSupervisor.Settings settings) {
    return new VmLauncher() {
      @Override
      public Behavior<VmSupervisorProtocol.Command> start(Hypervisor hv, VmSpec spec, MainProcess main, boolean paused,
          ActorRef<VmSupervisorProtocol.Report> parent) {
        return VmSupervisor.start(hv, spec, parent, settings, main, paused);
      }

      @Override
      public Behavior<VmSupervisorProtocol.Command> adopt(Hypervisor hv, VmHandle handle, MainProcess main, boolean paused,
          ActorRef<VmSupervisorProtocol.Report> parent) {
        return VmSupervisor.adopt(hv, handle, parent, settings, main, paused);
      }

      @Override
      public Duration lease() {
        return settings.lease();
      }
    };
  }

  public Path vmStateDir(String sandboxId, long incarnation) {
    return vmRoot.resolve(sandboxId + "-" + incarnation);
  }

  /**
   * The restart budget: at most {@code maxRestarts} restarts in a row, each after an exponential
   * backoff; a VM that ran at least {@code resetAfter} counts as a fresh start.
   */
  public record RestartSettings(int maxRestarts, Duration minBackoff, Duration maxBackoff, Duration resetAfter) {
    Duration backoff(int restart) {
      long ms = minBackoff.toMillis() << Math.min(20, Math.max(0, restart - 1));
      return Duration.ofMillis(Math.min(ms, maxBackoff.toMillis()));
    }
  }
}
