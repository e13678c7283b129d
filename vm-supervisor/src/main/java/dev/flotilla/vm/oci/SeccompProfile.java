package dev.flotilla.vm.oci;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The seccomp filter of a sandbox, in the OCI runtime spec's {@code linux.seccomp} shape, made from
 * Podman's default profile (Debian's golang-github-containers-common ships it as
 * {@code /usr/share/containers/seccomp.json}) rather than written by hand.
 *
 * <p>Podman's file is a template: rules carry {@code includes}/{@code excludes} on architectures,
 * capabilities and kernel versions, resolved here for x86-64, the capabilities the sandbox gets and
 * the running kernel, as Podman does when it starts a container.
 *
 * <p>On top of it, Flotilla forbids what Podman leaves to capabilities alone: a sandbox may not make
 * namespaces (unshare, setns, clone with namespace flags, clone3) nor mount anything. Inside a
 * fresh user namespace those calls would succeed with full capabilities there; harmless to the host,
 * but attack surface (the kernel's namespace and mount code) a code-execution sandbox never needs.
 */
public final class SeccompProfile {
  /** Syscalls that work on namespaces or mounts: refused with EPERM. */
  static final Set<String> FORBIDDEN = Set.of(
      "unshare", "setns", "mount", "umount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen",
      "fsconfig", "fsmount", "fspick", "mount_setattr", "keyctl", "add_key", "request_key");
  /** CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME: clone is allowed without them. */
  static final long CLONE_NAMESPACE_FLAGS = 0x00020000L | 0x02000000L | 0x04000000L | 0x08000000L
      | 0x10000000L | 0x20000000L | 0x40000000L | 0x00000080L;
  private static final int EPERM = 1;
  private static final int ENOSYS = 38;
  private static final Set<String> ARCH = Set.of("amd64", "x86_64");

  private SeccompProfile() {}

  /**
   * The resolved profile.
   *
   * @param podmanProfile Podman's seccomp.json
   * @param capabilities the sandbox's capabilities (CAP_ names)
   * @param kernel the running kernel's release (for {@code minKernel}), e.g. {@code 6.1.0}
   */
  public static Map<String, Object> fromPodman(Path podmanProfile, Set<String> capabilities, String kernel) throws IOException {
    JsonNode p = new ObjectMapper().readTree(podmanProfile.toFile());
    if (!p.has("syscalls") || !p.has("defaultAction")) throw new IOException(podmanProfile + " is not a seccomp profile");
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("defaultAction", p.get("defaultAction").asText());
    if (p.has("defaultErrnoRet")) out.put("defaultErrnoRet", p.get("defaultErrnoRet").asInt());
    List<String> arches = new ArrayList<>();
    for (JsonNode a : p.path("archMap")) {
      if ("SCMP_ARCH_X86_64".equals(a.path("architecture").asText())) {
        arches.add("SCMP_ARCH_X86_64");
        a.path("subArchitectures").forEach(s -> arches.add(s.asText()));
      }
    }
    if (arches.isEmpty()) arches.add("SCMP_ARCH_X86_64");
    out.put("architectures", arches);
    List<Map<String, Object>> rules = new ArrayList<>();
    for (JsonNode r : p.get("syscalls")) {
      if (!applies(r, capabilities, kernel)) continue;
      List<String> names = new ArrayList<>();
      r.path("names").forEach(n -> {
        String name = n.asText();
        if (!FORBIDDEN.contains(name) && !name.equals("clone") && !name.equals("clone3")) names.add(name);
      });
      if (names.isEmpty()) continue;
      Map<String, Object> rule = new LinkedHashMap<>();
      rule.put("names", names);
      rule.put("action", r.path("action").asText());
      if (r.has("errnoRet")) rule.put("errnoRet", r.get("errnoRet").asInt());
      List<Map<String, Object>> args = new ArrayList<>();
      for (JsonNode a : r.path("args")) {
        Map<String, Object> arg = new LinkedHashMap<>();
        arg.put("index", a.path("index").asInt());
        arg.put("value", a.path("value").asLong());
        if (a.path("valueTwo").asLong() != 0) arg.put("valueTwo", a.path("valueTwo").asLong());
        arg.put("op", a.path("op").asText());
        args.add(arg);
      }
      if (!args.isEmpty()) rule.put("args", args);
      rules.add(rule);
    }
    rules.add(Map.of("names", List.copyOf(new java.util.TreeSet<>(FORBIDDEN)), "action", "SCMP_ACT_ERRNO", "errnoRet", EPERM));
    // clone without namespace flags (threads, fork) is allowed; with them it falls to the default (ENOSYS).
    rules.add(Map.of("names", List.of("clone"), "action", "SCMP_ACT_ALLOW",
        "args", List.of(Map.of("index", 0, "value", CLONE_NAMESPACE_FLAGS, "valueTwo", 0, "op", "SCMP_CMP_MASKED_EQ"))));
    // clone3's flags sit in a struct seccomp cannot read: ENOSYS makes glibc fall back to clone.
    rules.add(Map.of("names", List.of("clone3"), "action", "SCMP_ACT_ERRNO", "errnoRet", ENOSYS));
    out.put("syscalls", rules);
    return out;
  }

  private static boolean applies(JsonNode rule, Set<String> caps, String kernel) {
    JsonNode inc = rule.path("includes");
    JsonNode exc = rule.path("excludes");
    if (inc.has("arches") && inc.get("arches").size() > 0 && !anyIn(inc.get("arches"), ARCH)) return false;
    if (exc.has("arches") && anyIn(exc.get("arches"), ARCH)) return false;
    if (inc.has("caps")) {
      for (JsonNode c : inc.get("caps")) if (!caps.contains(c.asText())) return false;
    }
    if (exc.has("caps") && anyIn(exc.get("caps"), caps)) return false;
    if (inc.has("minKernel") && compareKernel(kernel, inc.get("minKernel").asText()) < 0) return false;
    return true;
  }

  private static boolean anyIn(JsonNode array, Set<String> set) {
    for (JsonNode n : array) if (set.contains(n.asText())) return true;
    return false;
  }

  /** Compares dotted numeric kernel versions (the leading numeric part of each component). */
  static int compareKernel(String a, String b) {
    String[] x = a.split("[.-]");
    String[] y = b.split("[.-]");
    for (int i = 0; i < Math.max(x.length, y.length) && i < 3; i++) {
      int c = Integer.compare(num(x, i), num(y, i));
      if (c != 0) return c;
    }
    return 0;
  }

  private static int num(String[] parts, int i) {
    if (i >= parts.length) return 0;
    String digits = parts[i].replaceAll("^(\\d*).*$", "$1");
    return digits.isEmpty() ? 0 : Integer.parseInt(digits);
  }
}
