package dev.flotilla.node;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.flotilla.api.v1.DeleteImageRequest;
import dev.flotilla.api.v1.ExecRequest;
import dev.flotilla.api.v1.ExecResponse;
import dev.flotilla.api.v1.Image;
import dev.flotilla.api.v1.ImageServiceClient;
import dev.flotilla.api.v1.ImportImageMetadata;
import dev.flotilla.api.v1.ImportImageRequest;
import dev.flotilla.api.v1.ListImagesRequest;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.PullImageRequest;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import dev.flotilla.api.v1.StartSandboxRequest;
import dev.flotilla.api.v1.StopSandboxRequest;
import dev.flotilla.images.Digest;
import dev.flotilla.images.TestRegistry;
import dev.flotilla.images.TestTools;
import dev.flotilla.images.TestUmoci;
import io.grpc.Status;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.pekko.grpc.GrpcClientSettings;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Images end to end on a real node with the process driver: an image built with umoci on the
 * node's busybox root (files, Env, WorkingDir, a non-root User from its own /etc/passwd), pushed
 * with skopeo to Debian's docker-registry on loopback, run through {@code create --image}; pinned
 * to its digest across a moved tag and a VM restart; imports through ImportImage (OCI layout tar,
 * docker-save archive) and their tenant's ownership.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ImagesIT extends NodeScenarios {
  static final String PASSWD = "root:x:0:0:root:/root:/bin/sh\n"
      + "app:x:1000:1000:app:/home/app:/bin/sh\n"
      + "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
  static final String GROUP = "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n";

  static final long MAX_IMPORT = 16L * 1024 * 1024;

  Path work;
  Path busybox;
  TestRegistry registry;
  ImageServiceClient images;

  @BeforeAll
  void start() throws Exception {
    TestUmoci.requireTools();
    busybox = Path.of(System.getProperty("flotilla.default.image", "../guest-image/out/default-image/rootfs")).toAbsolutePath();
    assertTrue(Files.isDirectory(busybox.resolve("bin")), busybox + " is missing: run guest-image/build-default-image.sh");
    work = Files.createTempDirectory("images-it");
    registry = TestRegistry.start(work, "127.0.0.1", "");
    // Small enough that a refused import is quick to send; the busybox-based archives are a few MiB.
    boot(new TestNode(TestNode.shortTempDir(), null,
        com.typesafe.config.ConfigFactory.parseString("flotilla.images.max-import-bytes = " + MAX_IMPORT)));
    images = ImageServiceClient.create(
        GrpcClientSettings.connectToServiceAt("127.0.0.1", node.node.grpcPort(), clientSystem).withTls(false), clientSystem);
  }

  @AfterEach
  void deleteSandboxes() {
    deleteAll();
  }

  @AfterAll
  void stop() {
    try {
      tearDown(node);
    } finally {
      if (registry != null) registry.close();
      if (work != null) TestTools.run(null, "rm", "-rf", work.toString());
    }
  }

  /** One image on busybox: /srv/app/greeting = {@code greeting}, Env, WorkingDir /srv/app, User app (1000). */
  Path layout(String name, String tag, String greeting) throws IOException {
    Path layout = work.resolve("layout-" + name);
    TestUmoci.build(work, layout, tag, busybox,
        Map.of("etc/passwd", PASSWD, "etc/group", GROUP, "srv/app/greeting", greeting + "\n"),
        List.of("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello from " + name),
        "/srv/app", "app");
    return layout;
  }

  @Test
  void aRegistryImageRunsWithItsConfigAndStaysPinnedWhenItsTagMoves() throws Exception {
    String ref = registry.address() + "/demo/app:1";
    Digest first = TestUmoci.push(layout("first", "v1", "first bytes"), "v1", registry.address(), "demo/app:1");

    Sandbox created = create(SandboxSpec.newBuilder(spec()).setImage(ref).build(), "");
    assertEquals(ref + "@" + first, created.getSpec().getImage(), "the spec pins the image to its manifest digest");
    String id = created.getId();
    Sandbox running = awaitPhase(id, Phase.RUNNING);
    assertEquals(ref + "@" + first, running.getSpec().getImage());

    assertEquals("/srv/app\n", exec(id, "pwd").stdout(), "the image's WorkingDir");
    assertEquals("1000\n", exec(id, "id", "-u").stdout(), "the image's User, from its own /etc/passwd");
    assertEquals("hello from first\n", exec(id, "sh", "-c", "echo $GREETING").stdout(), "the image's Env");
    assertEquals("first bytes\n", exec(id, "cat", "/srv/app/greeting").stdout(), "the image's files");
    assertEquals("0\n", execAs(id, "root", "id", "-u"), "ExecRequest.user overrides the image's User");

    // The tag moves to other bytes, and the node learns it (a pull of the tag names the new digest).
    Digest second = TestUmoci.push(layout("second", "v2", "second bytes"), "v2", registry.address(), "demo/app:1");
    assertNotEquals(first, second);
    Image pulled = await(images.pullImage().addHeader("authorization", bearer()).invoke(PullImageRequest.newBuilder().setRef(ref).build()));
    assertEquals(second.toString(), pulled.getDigest());
    assertEquals("shared", pulled.getOwner(), "a pull without credentials of the caller's own is shared");
    assertTrue(pulled.hasCreated() && pulled.getCreated().getSeconds() > 1_700_000_000L, "umoci's created time: " + pulled);
    assertEquals(List.of(ref), pulled.getNamesList());

    // A new VM for the same sandbox still runs the first bytes: the spec pinned them.
    await(client.stopSandbox().addHeader("authorization", bearer()).invoke(StopSandboxRequest.newBuilder().setId(id).build()));
    awaitPhase(id, Phase.STOPPED);
    await(client.startSandbox().addHeader("authorization", bearer()).invoke(StartSandboxRequest.newBuilder().setId(id).build()));
    Sandbox restarted = awaitPhase(id, Phase.RUNNING);
    assertTrue(restarted.getIncarnation() > running.getIncarnation(), "a new VM: " + restarted.getIncarnation());
    assertEquals("first bytes\n", exec(id, "cat", "/srv/app/greeting").stdout());
    assertEquals("hello from first\n", exec(id, "sh", "-c", "echo $GREETING").stdout());

    // ...while a create by the tag now gets the second.
    Sandbox other = create(SandboxSpec.newBuilder(spec()).setImage(ref).build(), "");
    assertEquals(ref + "@" + second, other.getSpec().getImage());
    awaitPhase(other.getId(), Phase.RUNNING);
    assertEquals("second bytes\n", exec(other.getId(), "cat", "/srv/app/greeting").stdout());

    // The pulled tag is shared: no tenant may remove it (not even the default one); the admin identity may,
    // and the sandboxes that run it go on (their digest is in use).
    var denied = failure(() -> deleteAs(TestNode.OTHER_TOKEN, ref));
    assertEquals(Status.Code.PERMISSION_DENIED, denied.getStatus().getCode());
    assertEquals(Status.Code.PERMISSION_DENIED, failure(() -> deleteAs(token, ref)).getStatus().getCode());
    assertEquals(second.toString(), deleteAs(node.adminToken(), ref).getDigest());
    assertTrue(listAs(token).stream().noneMatch(i -> i.getNamesList().contains(ref)));
    assertEquals("second bytes\n", exec(other.getId(), "cat", "/srv/app/greeting").stdout());
  }

  @Test
  void anImportOverTheLimitOrCancelledLeavesNothingBehind() throws Exception {
    // Through the CLI: progress lines on stderr, then the node's refusal at max-import-bytes.
    Path big = work.resolve("big.tar");
    try (var out = Files.newOutputStream(big)) {
      byte[] mib = new byte[1024 * 1024];
      for (int i = 0; i < 17; i++) out.write(mib);
    }
    Cli refused = cli("", "image", "import", big.toString(), "--name", "big/one:1");
    assertEquals(1, refused.code(), refused.err());
    assertTrue(refused.err().contains("importing big.tar: 2.0 MiB of 17.0 MiB (11%)\n"), refused.err());
    assertTrue(refused.err().endsWith("flotilla: invalid argument: the archive is larger than this node accepts "
        + "(flotilla.images.max-import-bytes = " + MAX_IMPORT + " bytes)\n"), refused.err());

    // A client that gives up half-way: the node's spool file goes too.
    List<ImportImageRequest> parts = new ArrayList<>();
    parts.add(ImportImageRequest.newBuilder().setMetadata(ImportImageMetadata.newBuilder().setName("half/way:1")).build());
    parts.add(ImportImageRequest.newBuilder().setChunk(ByteString.copyFrom(new byte[512 * 1024])).build());
    RuntimeException cancelled = null;
    try {
      await(images.importImage().addHeader("authorization", bearer())
          .invoke(Source.from(parts).concat(Source.failed(new RuntimeException("client gave up")))));
    } catch (RuntimeException e) {
      cancelled = e;
    }
    assertTrue(cancelled != null, "a cancelled import imports nothing");
    org.awaitility.Awaitility.await("the spool files are deleted").atMost(READY)
        .until(() -> importLeftovers().isEmpty());
    assertTrue(listAs(token).stream().noneMatch(i -> i.getNamesList().contains("docker.io/big/one:1")
        || i.getNamesList().contains("docker.io/half/way:1")));
  }

  @Test
  void importedImagesRunAndBelongToTheirTenant() throws Exception {
    // An OCI layout as a tar, named at import under the loopback registry's host (which does not have it).
    Path layout = layout("oci", "v1", "imported oci layout");
    Path ociTar = work.resolve("oci-layout.tar");
    TestTools.run(null, "tar", "-C", layout.toString(), "-cf", ociTar.toString(), ".");
    String ociName = registry.address() + "/imported/oci:1";
    Image oci = importAs(token, ociName, ociTar);
    assertEquals("yours", oci.getOwner());
    assertEquals(List.of(ociName), oci.getNamesList());

    // A docker-save archive (skopeo writes the format), named by its own RepoTags.
    Path saved = work.resolve("saved.tar");
    TestUmoci.build(work, layout, "v2", busybox, Map.of("srv/app/greeting", "imported docker save\n", "etc/passwd", PASSWD),
        List.of("GREETING=saved"), "/srv/app", "root");
    TestTools.run(null, "skopeo", "copy", "oci:" + layout + ":v2", "docker-archive:" + saved + ":saved/app:2");
    Image save = importAs(token, "", saved);
    assertEquals("yours", save.getOwner());
    assertEquals(List.of("docker.io/saved/app:2"), save.getNamesList());
    assertNotEquals(oci.getDigest(), save.getDigest());

    List<Image> mine = listAs(token);
    assertTrue(mine.stream().anyMatch(i -> i.getDigest().equals(oci.getDigest()) && i.getOwner().equals("yours")), mine.toString());
    assertTrue(mine.stream().anyMatch(i -> i.getDigest().equals(save.getDigest())), mine.toString());

    String fromOci = create(SandboxSpec.newBuilder(spec()).setImage(ociName).build(), "").getId();
    assertEquals(ociName + "@" + oci.getDigest(), get(fromOci).getSpec().getImage());
    String fromSave = create(SandboxSpec.newBuilder(spec()).setImage("saved/app:2").build(), "").getId();
    awaitPhase(fromOci, Phase.RUNNING);
    awaitPhase(fromSave, Phase.RUNNING);
    assertEquals("imported oci layout\n", exec(fromOci, "cat", "/srv/app/greeting").stdout());
    assertEquals("1000\n", exec(fromOci, "id", "-u").stdout());
    assertEquals("imported docker save\n", exec(fromSave, "cat", "/srv/app/greeting").stdout());
    assertEquals("saved\n", exec(fromSave, "sh", "-c", "echo $GREETING").stdout());

    // Tenant B: neither listed, nor resolvable by name or digest, nor deletable, nor runnable.
    String b = TestNode.OTHER_TOKEN;
    List<Image> theirs = listAs(b);
    assertTrue(theirs.stream().noneMatch(i -> i.getDigest().equals(oci.getDigest()) || i.getDigest().equals(save.getDigest())),
        theirs.toString());
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> createAs(b, ociName)));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> createAs(b, ociName + "@" + oci.getDigest())));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> deleteAs(b, ociName)));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> deleteAs(b, oci.getDigest())));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> await(images.pullImage().addHeader("authorization", "Bearer " + b)
        .invoke(PullImageRequest.newBuilder().setRef(ociName).build()))));
    assertTrue(listAs(token).stream().anyMatch(i -> i.getDigest().equals(oci.getDigest())), "A's image is untouched");

    // The owner removes its name: gone from its listing, and a create by that name is refused.
    assertEquals(oci.getDigest(), deleteAs(token, ociName).getDigest());
    assertTrue(listAs(token).stream().noneMatch(i -> i.getNamesList().contains(ociName)));
    assertEquals(Status.Code.NOT_FOUND, codeOf(() -> createAs(token, ociName)));
  }

  @Test
  void badRequestsSayWhatToFix() throws Exception {
    var bad = failure(() -> await(images.pullImage().addHeader("authorization", bearer())
        .invoke(PullImageRequest.newBuilder().setRef("Not A Ref!").build())));
    assertEquals(Status.Code.INVALID_ARGUMENT, bad.getStatus().getCode());
    assertTrue(bad.getStatus().getDescription().contains("ref"), bad.getStatus().getDescription());

    var tooLong = failure(() -> await(images.pullImage().addHeader("authorization", bearer())
        .invoke(PullImageRequest.newBuilder().setRef("a".repeat(600)).build())));
    assertEquals(Status.Code.INVALID_ARGUMENT, tooLong.getStatus().getCode());

    // Nothing listens on this port: the registry cannot be reached.
    int closed;
    try (var s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      closed = s.getLocalPort();
    }
    var unreachable = failure(() -> await(images.pullImage().addHeader("authorization", bearer())
        .invoke(PullImageRequest.newBuilder().setRef("127.0.0.1:" + closed + "/nothing/here:1").build())));
    assertEquals(Status.Code.UNAVAILABLE, unreachable.getStatus().getCode(), unreachable.getStatus().getDescription());

    var missing = failure(() -> await(images.pullImage().addHeader("authorization", bearer())
        .invoke(PullImageRequest.newBuilder().setRef(registry.address() + "/no/such:1").build())));
    assertEquals(Status.Code.NOT_FOUND, missing.getStatus().getCode(), missing.getStatus().getDescription());

    Path junk = work.resolve("junk.tar");
    Files.writeString(junk, "this is not a tar");
    var notAnArchive = failure(() -> importAs(token, "junk/image:1", junk));
    assertEquals(Status.Code.INVALID_ARGUMENT, notAnArchive.getStatus().getCode());
    var noMetadata = failure(() -> await(images.importImage().addHeader("authorization", bearer())
        .invoke(Source.single(ImportImageRequest.newBuilder().setChunk(ByteString.copyFromUtf8("x")).build()))));
    assertEquals(Status.Code.INVALID_ARGUMENT, noMetadata.getStatus().getCode());
    var noToken = failure(() -> await(images.listImages().invoke(ListImagesRequest.getDefaultInstance())));
    assertEquals(Status.Code.UNAUTHENTICATED, noToken.getStatus().getCode());
    assertEquals(List.of(), importLeftovers(), "every import's spool file is deleted, refused ones too");
  }

  @Test
  void theCliImportsListsPullsAndRemovesImages() throws Exception {
    Path layout = layout("cli", "v1", "via the cli");
    Path tar = work.resolve("cli-layout.tar");
    TestTools.run(null, "tar", "-C", layout.toString(), "-cf", tar.toString(), ".");

    Cli imported = cli("", "image", "import", tar.toString(), "--name", "cli/app:1");
    assertEquals(0, imported.code(), imported.err());
    assertTrue(imported.out().matches("docker\\.io/cli/app:1 sha256:[0-9a-f]{64}\n"), imported.out());
    String digest = imported.out().strip().split(" ")[1];

    Cli ls = cli("", "image", "ls");
    assertEquals(0, ls.code(), ls.err());
    assertTrue(ls.out().startsWith("NAME "), ls.out());
    assertTrue(ls.out().lines().anyMatch(l -> l.startsWith("docker.io/cli/app:1 ") && l.contains(digest.substring(0, 19))
        && l.contains(" yours ")), ls.out());
    Cli json = cli("", "image", "ls", "-o", "json");
    assertTrue(json.out().contains("\"names\": [\"docker.io/cli/app:1\"],\n    \"digest\": \"" + digest + "\""), json.out());

    Cli created = cli("", "create", "--image", "cli/app:1");
    assertEquals(0, created.code(), created.err());
    String id = created.out().strip();
    awaitPhase(id, Phase.RUNNING);
    assertEquals("via the cli\n", exec(id, "cat", "/srv/app/greeting").stdout());

    // A pull with the caller's own credentials (password on stdin) is the caller's.
    TestUmoci.push(layout, "v1", registry.address(), "cli/pulled:1");
    Cli pulled = cli("registry-password\n", "image", "pull", registry.address() + "/cli/pulled:1", "--username", "someone",
        "--password-stdin");
    assertEquals(0, pulled.code(), pulled.err());
    assertEquals(registry.address() + "/cli/pulled:1 " + digest + "\n", pulled.out(), "the same bytes as imported, by the name pulled");
    assertTrue(cli("", "image", "ls").out().lines().anyMatch(l -> l.startsWith(registry.address() + "/cli/pulled:1 ")
        && l.contains(" yours ")));

    Cli removed = cli("", "image", "rm", "cli/app:1");
    assertEquals(0, removed.code(), removed.err());
    assertEquals("cli/app:1\n", removed.out());
    Cli again = cli("", "image", "rm", "cli/app:1");
    assertEquals(1, again.code());
    assertTrue(again.err().startsWith("flotilla: image cli/app:1 not found"), again.err());

    Cli bad = cli("", "image", "pull", "Busybox");
    assertEquals(1, bad.code());
    assertTrue(bad.err().startsWith("flotilla: invalid argument: ref 'Busybox'"), bad.err());
    int closed;
    try (var s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      closed = s.getLocalPort();
    }
    Cli unreachable = cli("", "image", "pull", "127.0.0.1:" + closed + "/x/y:1");
    assertEquals(3, unreachable.code(), unreachable.err());
    assertTrue(unreachable.err().startsWith("flotilla: unavailable: cannot reach http://127.0.0.1:" + closed), unreachable.err());
  }

  // ------------------------------------------------------------------------------ helpers

  List<Path> importLeftovers() throws IOException {
    try (var s = Files.list(node.dataDir.resolve("images").resolve("imports"))) {
      return s.toList();
    }
  }

  String execAs(String id, String user, String... argv) {
    List<ExecResponse> out = await(client.exec().addHeader("authorization", bearer())
        .invoke(ExecRequest.newBuilder().setSandboxId(id).setUser(user).addAllArgv(List.of(argv)).build())
        .runWith(Sink.seq(), clientSystem));
    var so = new ByteArrayOutputStream();
    for (ExecResponse r : out) {
      if (r.hasStdout()) so.writeBytes(r.getStdout().toByteArray());
    }
    assertEquals(0, out.get(out.size() - 1).getExit().getExitCode());
    return so.toString(StandardCharsets.UTF_8);
  }

  Image importAs(String tok, String name, Path archive) {
    List<ImportImageRequest> parts = new ArrayList<>();
    parts.add(ImportImageRequest.newBuilder().setMetadata(ImportImageMetadata.newBuilder().setName(name)).build());
    try (InputStream in = Files.newInputStream(archive)) {
      byte[] buf = new byte[256 * 1024];
      for (int n; (n = in.readNBytes(buf, 0, buf.length)) > 0; ) {
        parts.add(ImportImageRequest.newBuilder().setChunk(ByteString.copyFrom(buf, 0, n)).build());
      }
    } catch (IOException e) {
      throw new AssertionError(e);
    }
    return await(images.importImage().addHeader("authorization", "Bearer " + tok).invoke(Source.from(parts)));
  }

  List<Image> listAs(String tok) {
    return await(images.listImages().addHeader("authorization", "Bearer " + tok).invoke(ListImagesRequest.getDefaultInstance()))
        .getImagesList();
  }

  Image deleteAs(String tok, String ref) {
    return await(images.deleteImage().addHeader("authorization", "Bearer " + tok).invoke(DeleteImageRequest.newBuilder().setRef(ref).build()));
  }

  Sandbox createAs(String tok, String image) {
    return await(client.createSandbox().addHeader("authorization", "Bearer " + tok)
        .invoke(dev.flotilla.api.v1.CreateSandboxRequest.newBuilder().setSpec(SandboxSpec.newBuilder(spec()).setImage(image)).build()));
  }
}
