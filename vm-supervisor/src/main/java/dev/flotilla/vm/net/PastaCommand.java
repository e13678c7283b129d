package dev.flotilla.vm.net;

import java.net.InetAddress;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The command line that attaches pasta to a sandbox's network namespace.
 *
 * <p>pasta runs in the sandbox's user namespace as its root ({@code nsenter --user}): that is
 * the sandbox's own host uid, so the sockets it opens in the node's network namespace are owned
 * by that uid and {@link EgressRules} match them; and it is the only identity with the
 * capabilities pasta needs over the sandbox's network namespace (created by runc inside that user
 * namespace). It gets none over anything of the host's. pasta drops to "nobody" when started as
 * real root, and as an unprivileged host uid it could neither open the namespace nor configure it.
 * It opens the namespace through the node's bind mount of it ({@code /proc/PID/ns/net} needs
 * ptrace rights over the sandbox's init).
 *
 * <p>{@code -t none -u none}: no port of the host leads into the sandbox. {@code -T none -U none}:
 * the sandbox's loopback leads to no port of the host (pasta's default forwards them).
 * {@code --no-map-gw}: the gateway is not the host. DNS: {@code --dns-forward} maps the address the
 * sandbox's resolv.conf names to the node's resolver. pasta 2023-03 maps it only to a resolver it
 * read from {@code /etc/resolv.conf} (given with {@code -D}, the mapping is silently not made), so
 * pasta starts in a private mount namespace ({@code unshare --mount}) where the node's own
 * resolv.conf, naming the node's DNS servers, is bound over {@code /etc/resolv.conf}.
 * {@code -f}: foreground, so the pid the node started is pasta's (setsid, unshare, sh, nsenter
 * all exec) and the node tracks it.
 */
public final class PastaCommand {
  private PastaCommand() {}

  /**
   * @param upstream a resolv.conf naming the node's DNS servers, which pasta forwards to
   * @param userns the node's bind mount of the sandbox's user namespace
   * @param netns the node's bind mount of its network namespace, where pasta (as the sandbox's uid) can open it
   * @param pidFile written by pasta once it has configured the namespace (the node's readiness signal only)
   */
  public static List<String> of(Path pasta, Path upstream, Path userns, Path netns, Path pidFile, InetAddress dnsForward) {
    return new ArrayList<>(List.of("setsid", "unshare", "--mount", "--propagation", "private", "--",
        "sh", "-c", "mount --bind \"$1\" /etc/resolv.conf && shift && exec \"$@\"", "sh", upstream.toString(),
        "nsenter", "--user=" + userns, "--", pasta.toString(),
        "--foreground", "--config-net", "--netns", netns.toString(),
        "-t", "none", "-u", "none", "-T", "none", "-U", "none",
        "--no-map-gw", "--dns-forward", dnsForward.getHostAddress(), "--pid", pidFile.toString()));
  }

  /**
   * SIGKILLs a pasta or passt the node started (if {@code alive} says it is still the one recorded:
   * same pid and start time) and waits, at most 10 s, until it is gone.
   *
   * @param started the process the node started, or null for one adopted from another JVM
   * @return whether it is gone
   */
  public static boolean killAndAwait(Process started, long pid, java.util.function.BooleanSupplier alive) {
    if (alive.getAsBoolean()) ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
    if (started != null) {
      try {
        started.waitFor(10, java.util.concurrent.TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
    long until = System.nanoTime() + java.time.Duration.ofSeconds(10).toNanos();
    while (alive.getAsBoolean() && System.nanoTime() < until) {
      try {
        Thread.sleep(5); // a process that is not the node's child: nothing to wait on
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    return !alive.getAsBoolean();
  }
}
