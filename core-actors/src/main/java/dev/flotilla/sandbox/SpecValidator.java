package dev.flotilla.sandbox;

import com.typesafe.config.Config;
import dev.flotilla.sandbox.protocol.SandboxError;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Pattern;

/**
 * Checks a requested spec against this cluster's bounds and fills in defaults. Every refusal says
 * what to fix.
 *
 * @param drivers the drivers this cluster offers
 * @param unavailable drivers this node knows but cannot offer on its host, with what is missing
 */
public record SpecValidator(
    Set<String> drivers,
    Map<String, java.util.List<String>> unavailable,
    String defaultDriver,
    int defaultVcpus,
    int maxVcpus,
    int defaultMemoryMiB,
    int minMemoryMiB,
    int maxMemoryMiB,
    int maxLabels,
    int defaultDiskMiB,
    int minDiskMiB,
    int maxDiskMiB,
    java.time.Duration minTimeout,
    java.time.Duration maxTimeout,
    java.time.Duration minIdleTimeout,
    java.time.Duration maxIdleTimeout,
    Set<String> egressDrivers) {

  // Kubernetes' label syntax: users already know it, and tools can copy labels across.
  private static final Pattern LABEL_KEY = Pattern.compile("([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?");
  private static final Pattern LABEL_VALUE = Pattern.compile("([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?");

  public SpecValidator {
    drivers = Set.copyOf(drivers);
    unavailable = Map.copyOf(unavailable);
    egressDrivers = egressDrivers == null ? Set.of() : Set.copyOf(egressDrivers);
  }

  /** The drivers that can give a sandbox egress networking on this cluster's hosts. */
  public SpecValidator withEgressDrivers(Set<String> d) {
    return new SpecValidator(drivers, unavailable, defaultDriver, defaultVcpus, maxVcpus, defaultMemoryMiB, minMemoryMiB, maxMemoryMiB,
        maxLabels, defaultDiskMiB, minDiskMiB, maxDiskMiB, minTimeout, maxTimeout, minIdleTimeout, maxIdleTimeout, d);
  }

  public static SpecValidator fromConfig(Config c, Set<String> availableDrivers) {
    return fromConfig(c, availableDrivers, Map.of());
  }

  public static SpecValidator fromConfig(Config c, Set<String> availableDrivers, Map<String, java.util.List<String>> unavailable) {
    return new SpecValidator(
        availableDrivers,
        unavailable,
        c.getString("default-driver"),
        c.getInt("default-vcpus"),
        c.getInt("max-vcpus"),
        c.getInt("default-memory-mib"),
        c.getInt("min-memory-mib"),
        c.getInt("max-memory-mib"),
        c.getInt("max-labels"),
        c.getInt("default-disk-mib"),
        c.getInt("min-disk-mib"),
        c.getInt("max-disk-mib"),
        c.getDuration("min-timeout"),
        c.getDuration("max-timeout"),
        c.getDuration("min-idle-timeout"),
        c.getDuration("max-idle-timeout"),
        Set.of());
  }

  /** The spec with defaults filled in, or a {@link SandboxError} of kind INVALID_ARGUMENT. */
  public SandboxSpec normalize(SandboxSpec in) {
    String driver = in.driver() == null || in.driver().isEmpty() ? defaultDriver : in.driver();
    if (!drivers.contains(driver) && unavailable.containsKey(driver)) {
      throw SandboxError.precondition("driver '" + driver + "' is not available on this host: "
          + String.join("; ", unavailable.get(driver)) + ". To fix, run as root: scripts/setup-host.sh (./flotilla node runs it)");
    }
    if (!drivers.contains(driver)) {
      throw SandboxError.invalid("unknown driver '" + driver + "': this cluster offers " + String.join(", ", new java.util.TreeSet<>(drivers)));
    }
    Resources size = resources(in.vcpus(), in.memoryMiB());
    int vcpus = size.vcpus();
    int memory = size.memoryMiB();
    Map<String, String> labels = in.labels() == null ? Map.of() : in.labels();
    if (labels.size() > maxLabels) {
      throw SandboxError.invalid("at most " + maxLabels + " labels are allowed (got " + labels.size() + ")");
    }
    for (var e : new TreeMap<>(labels).entrySet()) {
      if (!LABEL_KEY.matcher(e.getKey()).matches()) {
        throw SandboxError.invalid("label key '" + e.getKey()
            + "' is invalid: use up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, optionally prefixed by a DNS name and '/'");
      }
      if (!LABEL_VALUE.matcher(e.getValue()).matches()) {
        throw SandboxError.invalid("label value '" + e.getValue() + "' of '" + e.getKey()
            + "' is invalid: use up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit");
      }
    }
    int disk = in.diskMiB() == 0 ? defaultDiskMiB : in.diskMiB();
    if (disk < minDiskMiB || disk > maxDiskMiB) {
      throw SandboxError.invalid("disk must be between " + minDiskMiB + " and " + maxDiskMiB + " MiB (got " + in.diskMiB() + ")");
    }
    checkCommand(in.command());
    if (in.image().length() > MAX_IMAGE_REF) {
      throw SandboxError.invalid("image reference is " + in.image().length() + " characters; at most " + MAX_IMAGE_REF);
    }
    checkTimeout(in.lifetime().timeout());
    Lifetime l = in.lifetime();
    if (l.idles() && (l.idleTimeout().compareTo(minIdleTimeout) < 0 || l.idleTimeout().compareTo(maxIdleTimeout) > 0)) {
      throw SandboxError.invalid("idle timeout must be between " + text(minIdleTimeout) + " and "
          + text(maxIdleTimeout) + " (got " + text(l.idleTimeout()) + "), or none");
    }
    Network n = network(in.network());
    if (n.egress() && !egressDrivers.contains(driver)) {
      throw SandboxError.precondition("network egress is not available for driver '" + driver + "' on this cluster"
          + (driver.equals("process") && drivers.contains("process")
              ? ": the process driver needs pasta, iptables and ip6tables on the node (run scripts/setup-host.sh as root)"
              : driver.equals("qemu") && drivers.contains("qemu")
              ? ": the qemu driver needs passt, iptables and ip6tables on the node (run scripts/setup-host.sh as root)"
              : egressDrivers.isEmpty() ? "" : "; it is for " + String.join(", ", new java.util.TreeSet<>(egressDrivers))));
    }
    return new SandboxSpec(driver, vcpus, memory, labels, in.restartPolicy(), disk, in.image(), in.command(), l, n);
  }

  /** A sandbox's vCPUs and memory. */
  public record Resources(int vcpus, int memoryMiB) {}

  /**
   * The vCPUs and memory a sandbox asking for these gets (0: this cluster's default), or a
   * {@link SandboxError} of kind INVALID_ARGUMENT. What a create checks, and what a VM template is
   * built for: a template is only of use to sandboxes of a size they may have.
   */
  public Resources resources(int vcpus, int memoryMiB) {
    int v = vcpus == 0 ? defaultVcpus : vcpus;
    if (v < 1 || v > maxVcpus) {
      throw SandboxError.invalid("vcpus must be between 1 and " + maxVcpus + " (got " + vcpus + ")");
    }
    int m = memoryMiB == 0 ? defaultMemoryMiB : memoryMiB;
    if (m < minMemoryMiB || m > maxMemoryMiB) {
      throw SandboxError.invalid("memory must be between " + minMemoryMiB + " and " + maxMemoryMiB + " MiB (got " + memoryMiB + ")");
    }
    return new Resources(v, m);
  }

  /** The network asked for, checked: a mode this cluster knows, and lists only with egress. */
  static Network network(Network n) {
    if (!n.egress() && !Network.NONE.equals(n.mode())) {
      throw SandboxError.invalid("network '" + n.mode() + "' is unknown: use none (the default) or egress");
    }
    if (!n.egress() && (!n.allow().isEmpty() || !n.deny().isEmpty())) {
      throw SandboxError.invalid("--allow and --deny need --network egress");
    }
    for (String e : n.allow()) if (e.indexOf(',') >= 0) throw SandboxError.invalid("allow entry '" + e + "': one CIDR or host name each");
    for (String e : n.deny()) if (e.indexOf(',') >= 0) throw SandboxError.invalid("deny entry '" + e + "': one CIDR or host name each");
    try {
      dev.flotilla.vm.net.EgressPolicy.fromOptions(n.vmOptions()); // the driver's own parser says what is wrong
    } catch (IllegalArgumentException e) {
      throw SandboxError.invalid(e.getMessage());
    }
    return n;
  }

  /** A resize's new resources: each 0 (unchanged) or within this cluster's bounds, and at least one given. */
  public void checkResize(int vcpus, int memoryMiB) {
    if (vcpus == 0 && memoryMiB == 0) {
      throw SandboxError.invalid("say what to change: vcpus (--cpus N) and/or memory_mib (--memory MIB)");
    }
    if (vcpus != 0 && (vcpus < 1 || vcpus > maxVcpus)) {
      throw SandboxError.invalid("vcpus must be between 1 and " + maxVcpus + " (got " + vcpus + "), or 0 to keep them");
    }
    if (memoryMiB != 0 && (memoryMiB < minMemoryMiB || memoryMiB > maxMemoryMiB)) {
      throw SandboxError.invalid("memory must be between " + minMemoryMiB + " and " + maxMemoryMiB + " MiB (got " + memoryMiB
          + "), or 0 to keep it");
    }
  }

  /** A timeout (at create, or SetTimeout's): zero for none, else within this cluster's bounds. */
  public void checkTimeout(java.time.Duration timeout) {
    if (!timeout.isZero() && (timeout.compareTo(minTimeout) < 0 || timeout.compareTo(maxTimeout) > 0)) {
      throw SandboxError.invalid("timeout must be between " + text(minTimeout) + " and " + text(maxTimeout)
          + " (got " + text(timeout) + "), or none");
    }
  }

  /** A duration as people write it: 30d, 12h, 30m, 90s, 500ms. */
  static String text(java.time.Duration d) {
    long ms = d.toMillis();
    if (ms % 86_400_000 == 0 && ms > 0) return ms / 86_400_000 + "d";
    if (ms % 3_600_000 == 0 && ms > 0) return ms / 3_600_000 + "h";
    if (ms % 60_000 == 0 && ms > 0) return ms / 60_000 + "m";
    if (ms % 1000 == 0) return ms / 1000 + "s";
    return ms + "ms";
  }

  /** Bounds of a main process's argv: what an exec takes, too. */
  public static final int MAX_COMMAND_ARGS = 1024;
  public static final int MAX_COMMAND_BYTES = 128 * 1024;
  /** A registry host, a 255-character name, a tag and a digest fit well under it. */
  public static final int MAX_IMAGE_REF = 1024;

  static void checkCommand(java.util.List<String> argv) {
    if (argv.isEmpty()) return;
    if (argv.get(0).isEmpty()) throw SandboxError.invalid("the command's first word (the program) must not be empty");
    if (argv.size() > MAX_COMMAND_ARGS) {
      throw SandboxError.invalid("the command has " + argv.size() + " words; at most " + MAX_COMMAND_ARGS);
    }
    long bytes = 0;
    for (String a : argv) {
      if (a.indexOf('\0') >= 0) throw SandboxError.invalid("the command must not contain NUL characters");
      bytes += a.length();
    }
    if (bytes > MAX_COMMAND_BYTES) throw SandboxError.invalid("the command is " + bytes + " bytes; at most " + MAX_COMMAND_BYTES);
  }
}
