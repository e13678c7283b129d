package dev.flotilla.images;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/** Builds images with umoci on an OCI layout and pushes them with skopeo, as an image author would. */
public final class TestUmoci {
  private TestUmoci() {}

  public static void requireTools() {
    TestTools.require("umoci", "umoci");
    TestTools.require("skopeo", "skopeo");
    TestTools.require("tar", "tar");
  }

  /**
   * Adds {@code tag} to the layout {@code layout} (created if missing): one layer with {@code files}
   * (path → content), then Env and WorkingDir in its config.
   */
  public static void build(Path work, Path layout, String tag, Map<String, String> files, String env, String workingDir)
      throws IOException {
    if (!Files.exists(layout.resolve("index.json"))) {
      TestTools.run(work, "umoci", "init", "--layout", layout.toString());
    }
    String image = layout + ":" + tag;
    TestTools.run(work, "umoci", "new", "--image", image);
    Path bundle = work.resolve("bundle-" + tag);
    TestTools.run(work, "umoci", "unpack", "--image", image, bundle.toString());
    for (Map.Entry<String, String> f : files.entrySet()) {
      Path p = bundle.resolve("rootfs").resolve(f.getKey());
      Files.createDirectories(p.getParent());
      Files.writeString(p, f.getValue());
    }
    Files.createDirectories(bundle.resolve("rootfs").resolve(workingDir.substring(1)));
    TestTools.run(work, "umoci", "repack", "--image", image, bundle.toString());
    TestTools.run(work, "umoci", "config", "--image", image, "--config.env", env, "--config.workingdir", workingDir,
        "--config.cmd", "/bin/sh");
  }

  /**
   * Adds {@code tag} to {@code layout}: one layer holding a copy of {@code baseRootfs} (e.g. the
   * node's busybox root) plus {@code files}, then Env, WorkingDir and User in its config.
   */
  public static void build(Path work, Path layout, String tag, Path baseRootfs, Map<String, String> files, List<String> env,
      String workingDir, String user) throws IOException {
    if (!Files.exists(layout.resolve("index.json"))) {
      TestTools.run(work, "umoci", "init", "--layout", layout.toString());
    }
    String image = layout + ":" + tag;
    TestTools.run(work, "umoci", "new", "--image", image);
    Path bundle = work.resolve("bundle-" + UUID.randomUUID());
    TestTools.run(work, "umoci", "unpack", "--image", image, bundle.toString());
    Path rootfs = bundle.resolve("rootfs");
    TestTools.run(work, "cp", "-a", baseRootfs + "/.", rootfs.toString());
    for (Map.Entry<String, String> f : files.entrySet()) {
      Path p = rootfs.resolve(f.getKey());
      Files.createDirectories(p.getParent());
      Files.writeString(p, f.getValue());
    }
    Files.createDirectories(rootfs.resolve(workingDir.substring(1)));
    TestTools.run(work, "umoci", "repack", "--image", image, bundle.toString());
    List<String> config = new ArrayList<>(List.of("umoci", "config", "--image", image));
    for (String e : env) {
      config.addAll(List.of("--config.env", e));
    }
    config.addAll(List.of("--config.workingdir", workingDir, "--config.user", user, "--config.cmd", "/bin/sh"));
    TestTools.run(work, config.toArray(String[]::new));
    TestTools.run(work, "rm", "-rf", bundle.toString());
  }

  /** Pushes {@code layout:tag} to {@code registry/repo:tag} over plain http; returns the digest the registry reports. */
  public static Digest push(Path layout, String tag, String registry, String repoTag, String... extraArgs) {
    String[] base = {"skopeo", "copy", "--dest-tls-verify=false"};
    String[] args = new String[base.length + extraArgs.length + 2];
    System.arraycopy(base, 0, args, 0, base.length);
    System.arraycopy(extraArgs, 0, args, base.length, extraArgs.length);
    args[args.length - 2] = "oci:" + layout + ":" + tag;
    args[args.length - 1] = "docker://" + registry + "/" + repoTag;
    TestTools.run(null, args);
    return Digest.parse(TestTools.run(null, "skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
        credsArg(extraArgs), "docker://" + registry + "/" + repoTag).lines().reduce((a, b) -> b).orElseThrow());
  }

  private static String credsArg(String[] extraArgs) {
    for (String a : extraArgs) {
      if (a.startsWith("--dest-creds=")) {
        return "--creds=" + a.substring("--dest-creds=".length());
      }
    }
    return "--tls-verify=false";
  }
}
