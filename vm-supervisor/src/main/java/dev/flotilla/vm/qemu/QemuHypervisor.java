package dev.flotilla.vm.qemu;

import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.HypervisorCapabilities;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The {@code qemu} driver: each sandbox a {@code -M microvm} guest (KVM when it works, TCG
 * otherwise) booting the Flotilla guest image, its agent on a virtio-serial port that QEMU bridges
 * to a Unix socket in the VM's state directory, and QMP on another for pause/resume/quit.
 *
 * <p>Spec options: {@code accel} ({@code kvm}/{@code tcg}) overrides the driver's choice for one VM.
 */
public final class QemuHypervisor implements Hypervisor {

  public static final String DRIVER = "qemu";
  /** sun_path holds 108 bytes including the NUL. */
  private static final int MAX_SOCKET_PATH = 107;
  private static final Pattern SAFE_ID = Pattern.compile("[A-Za-z0-9._:-]{1,200}");
  private static final Logger LOG = LoggerFactory.getLogger(QemuHypervisor.class);

  private final QemuConfig config;

  public QemuHypervisor(QemuConfig config) {
    this.config = config;
  }

  public QemuConfig config() {
    return config;
  }

  @Override
  public String driver() {
    return DRIVER;
  }

  @Override
  public HypervisorCapabilities capabilities() {
    List<String> warnings = new ArrayList<>();
    if (!config.imageBuilt()) {
      warnings.add("no guest image in " + config.imageDir() + ": run guest-image/build.sh");
    }
    HostProbe.Accel accel = HostProbe.accel(config);
    if (!accel.kvm()) {
      warnings.add("no usable KVM (" + accel.reason() + "): guests run under TCG emulation, several times slower");
    }
    warnings.add("pidsLimit is not enforced by the qemu driver (the VM's memory bounds the guest)");
    return new HypervisorCapabilities("vm", true, true, Set.of("memory", "cpu"), warnings);
  }

  @Override
  public Vm prepare(VmSpec spec) throws VmException {
    if (!config.imageBuilt()) {
      throw new VmException("the qemu driver has no guest image in " + config.imageDir()
          + ": build it with guest-image/build.sh (or point FLOTILLA_QEMU_IMAGE_DIR at one)");
    }
    if (spec.memoryMiB() < QemuConfig.MIN_MEMORY_MIB) {
      throw new VmException("the qemu driver needs memoryMiB >= " + QemuConfig.MIN_MEMORY_MIB
          + " (the guest unpacks a Java runtime into RAM); asked for " + spec.memoryMiB());
    }
    if (!SAFE_ID.matcher(spec.sandboxId()).matches()) {
      throw new VmException("sandbox id '" + spec.sandboxId() + "' cannot go on a kernel command line: use letters, digits, . _ : -");
    }
    Path dir = spec.stateDir().toAbsolutePath();
    Path agent = dir.resolve("agent.sock");
    Path qmp = dir.resolve("qmp.sock");
    if (agent.toString().getBytes(StandardCharsets.UTF_8).length > MAX_SOCKET_PATH) {
      throw new VmException("state directory " + dir + " is too long for a Unix socket path (max "
          + (MAX_SOCKET_PATH - "/agent.sock".length()) + " bytes)");
    }
    String accelOpt = spec.options().get("accel");
    boolean kvm;
    if (accelOpt == null) {
      kvm = HostProbe.accel(config).kvm();
    } else if (accelOpt.equals("kvm") || accelOpt.equals("tcg")) {
      kvm = accelOpt.equals("kvm");
    } else {
      throw new VmException("option accel must be kvm or tcg, not '" + accelOpt + "'");
    }
    try {
      Files.createDirectories(dir);
    } catch (IOException e) {
      throw new VmException("cannot create state directory " + dir + ": " + e.getMessage(), e);
    }
    VmHandle handle = new VmHandle(DRIVER, spec.sandboxId(), spec.incarnation(), 0, 0, dir, agent, java.util.Map.of())
        .withExtra("qmpSocket", qmp.toString())
        .withExtra("consoleLog", dir.resolve("console.log").toString())
        .withExtra("accel", kvm ? "kvm" : "tcg");
    return new QemuVm(handle, command(spec, handle, kvm));
  }

  @Override
  public Optional<Vm> adopt(VmHandle handle) {
    if (!DRIVER.equals(handle.driver()) || handle.pid() <= 0) return Optional.empty();
    if (!HostProbe.isSameProcess(handle.pid(), handle.startTime())) return Optional.empty();
    QemuVm vm = new QemuVm(handle);
    try {
      String status = vm.status(Duration.ofSeconds(5));
      LOG.info("adopted QEMU pid {} of sandbox {} incarnation {} ({})", handle.pid(), handle.sandboxId(),
          handle.incarnation(), status);
    } catch (VmException e) {
      // the process is ours (same start time): hand it over all the same, so it can be stopped
      LOG.warn("adopted QEMU pid {} does not answer QMP: {}", handle.pid(), e.getMessage());
    }
    return Optional.of(vm);
  }

  List<String> command(VmSpec spec, VmHandle handle, boolean kvm) {
    Path dir = handle.stateDir();
    StringBuilder append = new StringBuilder("console=ttyS0 quiet panic=-1");
    long tsc = kvm ? 0 : HostProbe.tscKhz();
    if (tsc > 0) append.append(" tsc_early_khz=").append(tsc);
    append.append(" flotilla.sandbox_id=").append(spec.sandboxId())
        .append(" flotilla.incarnation=").append(spec.incarnation());
    List<String> cmd = new ArrayList<>(List.of(
        config.qemuBinary(),
        "-name", "flotilla-" + spec.sandboxId() + "-" + spec.incarnation(),
        "-M", "microvm,pit=on",
        "-accel", kvm ? "kvm" : "tcg"));
    if (kvm) cmd.addAll(List.of("-cpu", "host"));
    cmd.addAll(List.of(
        "-smp", Integer.toString(spec.vcpus()),
        "-m", spec.memoryMiB() + "M",
        "-nodefaults", "-no-user-config", "-display", "none",
        // the guest's end (agent exit -> kernel panic -> reboot, or power off) ends QEMU
        "-no-reboot",
        "-kernel", config.kernel().toString(),
        "-initrd", config.initramfs().toString(),
        "-append", append.toString(),
        "-serial", "file:" + dir.resolve("console.log"),
        "-device", "virtio-serial-device,max_ports=2",
        "-chardev", "socket,id=agent,path=" + handle.agentSocket() + ",server=on,wait=off",
        "-device", "virtserialport,chardev=agent,name=flotilla.agent",
        "-chardev", "socket,id=qmp,path=" + handle.extra().get("qmpSocket") + ",server=on,wait=off",
        "-mon", "chardev=qmp,mode=control"));
    return cmd;
  }
}
