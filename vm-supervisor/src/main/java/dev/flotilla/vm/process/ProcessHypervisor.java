package dev.flotilla.vm.process;

import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.HypervisorCapabilities;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import java.io.IOException;
import java.nio.file.Files;
import java.util.LinkedHashSet;
import java.util.Optional;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The {@code process} driver: each sandbox is the guest agent in fresh Linux namespaces (user,
 * pid, mount, net, ipc, uts) under tini, limited by cgroups. Process isolation, not a VM: the
 * sandboxes share the host kernel.
 *
 * <p>Process tree of one sandbox, all in the sandbox's cgroups from before the first fork:
 * {@code unshare} (the handle's pid, session and group leader) → {@code tini} (PID 1 in the
 * namespace) → {@code java -jar agent}. The agent's output goes to {@code agent.log} in the
 * state directory and its stdin is /dev/null, so nothing ties the sandbox to the node's JVM.
 */
public final class ProcessHypervisor implements Hypervisor {
  public static final String DRIVER = "process";
  private static final Logger log = LoggerFactory.getLogger(ProcessHypervisor.class);

  private final ProcessHypervisorConfig config;
  private volatile HostFacts facts;

  public ProcessHypervisor(ProcessHypervisorConfig config) {
    this.config = config;
  }

  public ProcessHypervisorConfig config() {
    return config;
  }

  @Override
  public String driver() {
    return DRIVER;
  }

  HostFacts facts() {
    HostFacts f = facts;
    if (f == null) {
      synchronized (this) {
        f = facts;
        if (f == null) {
          f = HostFacts.probe(config);
          f.warnings().forEach(w -> log.warn("process driver: {}", w));
          facts = f;
        }
      }
    }
    return f;
  }

  @Override
  public HypervisorCapabilities capabilities() {
    HostFacts f = facts();
    Set<String> enforced = new LinkedHashSet<>();
    if (f.cgroups().mount(Cgroups.Controller.MEMORY).isPresent()) enforced.add("memory");
    if (f.cgroups().mount(Cgroups.Controller.CPU).isPresent()) enforced.add("cpu");
    if (f.cgroups().mount(Cgroups.Controller.PIDS).isPresent()) enforced.add("pids");
    return new HypervisorCapabilities("process", true, true, enforced, f.warnings());
  }

  /** Root inside a sandbox is this uid on the host (0 when only --map-root-user works). */
  public long sandboxRootHostUid() {
    return facts().idRange().map(HostFacts.IdRange::hostStart).orElse(0L);
  }

  @Override
  public Vm prepare(VmSpec spec) throws VmException {
    HostFacts f = facts();
    if (!f.mapRootUser()) throw new VmException("the process driver cannot create user namespaces on this host: " + f.warnings());
    if (!Files.isReadable(config.agentJar())) throw new VmException("guest agent jar not found: " + config.agentJar());
    try {
      ProcessVm.createStateDir(spec.stateDir(), sandboxRootHostUid());
    } catch (IOException e) {
      throw new VmException("cannot create state directory " + spec.stateDir() + ": " + e.getMessage(), e);
    }
    return new ProcessVm(config, f, spec, classDataArchive());
  }

  private Optional<java.nio.file.Path> archive;

  /** Made on the first prepare (a training run of the agent, about a second), then reused. */
  private synchronized Optional<java.nio.file.Path> classDataArchive() {
    if (!config.classDataArchive()) return Optional.empty();
    if (archive == null || archive.map(p -> !Files.isReadable(p)).orElse(false)) archive = AgentCds.archive(config);
    return archive;
  }

  /**
   * Also when the handle's root process is gone but its namespace lives on (unshare killed
   * while no node watched: its --kill-child does not survive the switch to the sandbox's uid):
   * the recorded init and whatever is in the sandbox's cgroups are killed, then the cgroups and
   * the state directory removed.
   */
  @Override
  public void reap(VmHandle handle) {
    if (!DRIVER.equals(handle.driver())) throw new IllegalArgumentException("not a process-driver VM: " + handle.driver());
    ProcessVm.adoptedEvenIfGone(config, facts(), handle).reap();
  }

  @Override
  public Optional<Vm> adopt(VmHandle handle) {
    if (!DRIVER.equals(handle.driver()) || handle.pid() <= 0) return Optional.empty();
    if (!Procfs.isSameProcess(handle.pid(), handle.startTime())) return Optional.empty();
    return Optional.of(ProcessVm.adopted(config, facts(), handle));
  }
}
