package dev.flotilla.node.grpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import dev.flotilla.api.v1.ListTemplatesRequest;
import dev.flotilla.api.v1.RemoveTemplateRequest;
import dev.flotilla.api.v1.Template;
import dev.flotilla.api.v1.WarmTemplateRequest;
import dev.flotilla.cli.TemplateServiceMethods;
import dev.flotilla.node.auth.TokenAuth;
import dev.flotilla.node.templates.NodeTemplates;
import dev.flotilla.sandbox.ImagePinning;
import dev.flotilla.sandbox.SpecValidator;
import dev.flotilla.sandbox.protocol.SandboxError;
import dev.flotilla.vm.TemplateCatalog;
import dev.flotilla.vm.VmException;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientInterceptors;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.MetadataUtils;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.grpc.GrpcServiceException;
import org.apache.pekko.grpc.javadsl.MetadataBuilder;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * TemplateService on a real gRPC port (bound by {@link GrpcServer}, as a node binds it) in front of
 * an in-memory {@link TemplateCatalog}: the qemu driver's own catalog is tested with the driver.
 * Checks what the edge owns: the caller's tenant from its token and nothing else, sizes by the
 * spec's bounds and defaults, each failure's status and message, and the bounds on warms.
 */
class TemplateServiceTest {
  private static final String TOKEN_A = "token-a";
  private static final String TOKEN_B = "token-b";
  private static final String NODE = "127.0.0.1:25520";
  private static final Duration WARM_TIMEOUT = Duration.ofSeconds(1);
  private static final SpecValidator SIZES = SpecValidator.fromConfig(
      ConfigFactory.defaultReference().getConfig("flotilla.sandbox"), Set.of("process", "qemu"), Map.of());

  private static final String DIGEST = "sha256:" + "ab".repeat(32);
  /**
   * Images as the node's store pins them for a tenant: "a-private" is tenant A's own (imported),
   * "unreachable" is on a registry that does not answer, any other name is pinned to {@link #DIGEST}.
   */
  private static final ImagePinning IMAGES = (tenant, image) -> switch (image) {
    case "a-private" -> tenant.equals("tenant-a") ? CompletableFuture.completedFuture("a-private:latest@" + DIGEST)
        : CompletableFuture.failedFuture(new SandboxError(SandboxError.Kind.NOT_FOUND, "image 'a-private' not found: no such image"));
    case "unreachable" -> CompletableFuture.failedFuture(SandboxError.unavailable("image 'unreachable' could not be pulled: timeout; retry"));
    default -> CompletableFuture.completedFuture(image + "@" + DIGEST);
  };

  private static ActorSystem<Void> system;
  private static ServerBinding binding;
  private static ManagedChannel channel;
  private static ExecutorService blocking;
  private static final FakeCatalog catalog = new FakeCatalog();

  @BeforeAll
  static void bind() throws Exception {
    system = ActorSystem.create(Behaviors.empty(), "template-service-test", ConfigFactory.parseString(
            "pekko.actor.provider = local\npekko.loglevel = ERROR\npekko.stdout-loglevel = ERROR\n"
                + "pekko.http.server.enable-http2 = on\npekko.http.server.preview.enable-http2 = on")
        .withFallback(ConfigFactory.defaultReference()));
    blocking = Executors.newCachedThreadPool();
    // qemu has templates; process is offered here but has none
    NodeTemplates templates = new NodeTemplates(Map.of("qemu", catalog), Set.of("process", "qemu"), SIZES, IMAGES, NODE, blocking,
        WARM_TIMEOUT, 1);
    binding = GrpcServer.bind(system, null, null, templates, new TokenAuth(Map.of(TOKEN_A, "tenant-a", TOKEN_B, "tenant-b")),
        Set.of("admin"), Duration.ofSeconds(5), "127.0.0.1", 0, Optional.empty()).toCompletableFuture().get(30, TimeUnit.SECONDS);
    channel = NettyChannelBuilder.forAddress("127.0.0.1", binding.localAddress().getPort()).usePlaintext().build();
  }

  @AfterAll
  static void unbind() throws Exception {
    if (channel != null) channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    if (system != null) {
      system.terminate();
      system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
    }
    if (blocking != null) blocking.shutdownNow();
  }

  @BeforeEach
  void empty() {
    catalog.clear();
  }

  // ------------------------------------------------------------------------------ warm

  @Test
  void warm_fills_in_the_sizes_a_sandbox_gets_and_answers_the_template_of_this_node() {
    Template t = call(TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setImage("busybox").build());

    TemplateCatalog.WarmRequest asked = catalog.warmed.get(0);
    assertEquals(new TemplateCatalog.WarmRequest("tenant-a", "busybox@" + DIGEST, SIZES.defaultVcpus(), SIZES.defaultMemoryMiB()),
        asked, "the image pinned as a create pins it");
    assertEquals("busybox@" + DIGEST, t.getImage());
    assertEquals(DIGEST, t.getImageDigest());
    assertEquals(SIZES.defaultVcpus(), t.getCpus());
    assertEquals(SIZES.defaultMemoryMiB(), t.getMemoryMib());
    assertEquals(1024, t.getDiskMib());
    assertEquals(210L << 20, t.getBytes());
    assertEquals(NODE, t.getNode());
    assertEquals("qemu", t.getDriver());
    assertEquals(1_000, t.getCreated().getSeconds());
    assertEquals(t.getCreated(), t.getLastUsed(), "never used: last used is its creation");

    call(TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE,
        WarmTemplateRequest.newBuilder().setCpus(2).setMemoryMib(512).setDriver("qemu").build());
    assertEquals(new TemplateCatalog.WarmRequest("tenant-a", "", 2, 512), catalog.warmed.get(1), "no image: the default one");
  }

  @Test
  void sizes_outside_what_a_sandbox_may_ask_for_are_invalid_and_say_the_bounds() {
    assertStatus(Status.Code.INVALID_ARGUMENT, "vcpus must be between 1 and " + SIZES.maxVcpus() + " (got 99)",
        TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setCpus(99).build());
    assertStatus(Status.Code.INVALID_ARGUMENT, "memory must be between " + SIZES.minMemoryMiB() + " and " + SIZES.maxMemoryMiB()
            + " MiB (got 8)",
        TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setMemoryMib(8).build());
    assertStatus(Status.Code.INVALID_ARGUMENT, "vcpus must be between 1 and " + SIZES.maxVcpus(),
        TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setCpus(-1).build()); // uint32 max
    assertStatus(Status.Code.INVALID_ARGUMENT, "image 'Not An Image!'",
        TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setImage("Not An Image!").build());
    assertStatus(Status.Code.INVALID_ARGUMENT, "image must be at most 512 characters",
        TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setImage("a".repeat(513)).build());
    assertTrue(catalog.warmed.isEmpty(), "nothing reached the driver");
  }

  @Test
  void a_driver_without_templates_is_a_failed_precondition_naming_the_drivers_that_have_them() {
    assertStatus(Status.Code.FAILED_PRECONDITION, "driver 'process' has no templates: on this node templates are for: qemu",
        TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setDriver("process").build());
    assertStatus(Status.Code.FAILED_PRECONDITION, "this node has no driver 'firecracker': on this node templates are for: qemu"
            + " (this node offers process, qemu)",
        TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setDriver("firecracker").build());
  }

  @Test
  void a_node_without_any_template_driver_says_so() throws Exception {
    TemplateServiceImpl service = new TemplateServiceImpl(
        new NodeTemplates(Map.of(), Set.of("process"), SIZES, IMAGES, NODE, blocking, WARM_TIMEOUT, 1),
        new TokenAuth(Map.of(TOKEN_A, "tenant-a")));
    var md = new MetadataBuilder().addText("authorization", "Bearer " + TOKEN_A).build();

    ExecutionException e = assertThrows(ExecutionException.class, () ->
        service.warmTemplate(WarmTemplateRequest.getDefaultInstance(), md).toCompletableFuture().get(5, TimeUnit.SECONDS));
    Status s = ((GrpcServiceException) e.getCause()).status();
    assertEquals(Status.Code.FAILED_PRECONDITION, s.getCode());
    assertEquals("this node has no driver 'qemu': no driver on this node has templates (this node offers process)", s.getDescription());
    assertEquals(0, service.listTemplates(ListTemplatesRequest.getDefaultInstance(), md).toCompletableFuture()
        .get(5, TimeUnit.SECONDS).getTemplatesCount());
  }

  @Test
  void an_image_the_caller_cannot_see_is_not_found_and_an_unreachable_registry_unavailable() {
    assertStatus(Status.Code.NOT_FOUND, "image 'a-private' not found",
        TOKEN_B, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setImage("a-private").build());
    assertStatus(Status.Code.UNAVAILABLE, "image 'unreachable' could not be pulled",
        TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setImage("unreachable").build());
    assertTrue(catalog.warmed.isEmpty(), "nothing reached the driver");
    assertEquals("a-private:latest@" + DIGEST, call(TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE,
        WarmTemplateRequest.newBuilder().setImage("a-private").build()).getImage(), "its owner warms it");
  }

  @Test
  void a_driver_failure_is_a_failed_precondition_with_the_drivers_message() {
    assertStatus(Status.Code.FAILED_PRECONDITION, "the image's init exited during the warm: fix the image",
        TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setImage("broken").build());
  }

  // ------------------------------------------------------------------------------ tenants

  @Test
  void another_tenant_neither_lists_nor_removes_a_template() {
    Template a = call(TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setImage("busybox").build());

    assertEquals(List.of(), call(TOKEN_B, TemplateServiceMethods.LIST_TEMPLATES, ListTemplatesRequest.getDefaultInstance())
        .getTemplatesList());
    assertStatus(Status.Code.NOT_FOUND, "template " + a.getId() + " not found on node " + NODE,
        TOKEN_B, TemplateServiceMethods.REMOVE_TEMPLATE, RemoveTemplateRequest.newBuilder().setId(a.getId()).build());
    // B warming the same image and size gets its own, never A's
    Template b = call(TOKEN_B, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setImage("busybox").build());
    assertTrue(!b.getId().equals(a.getId()), "B got A's template " + a.getId());

    assertEquals(List.of(a.getId()), call(TOKEN_A, TemplateServiceMethods.LIST_TEMPLATES, ListTemplatesRequest.getDefaultInstance())
        .getTemplatesList().stream().map(Template::getId).toList());
    assertEquals(a.getId(), call(TOKEN_A, TemplateServiceMethods.REMOVE_TEMPLATE,
        RemoveTemplateRequest.newBuilder().setId(a.getId()).build()).getId());
    assertEquals(List.of(b.getId()), call(TOKEN_B, TemplateServiceMethods.LIST_TEMPLATES, ListTemplatesRequest.getDefaultInstance())
        .getTemplatesList().stream().map(Template::getId).toList());
  }

  @Test
  void a_catalog_that_leaks_another_tenants_template_is_not_believed() {
    call(TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.getDefaultInstance());
    catalog.leak = true;
    try {
      assertEquals(0, call(TOKEN_B, TemplateServiceMethods.LIST_TEMPLATES, ListTemplatesRequest.getDefaultInstance())
          .getTemplatesCount());
    } finally {
      catalog.leak = false;
    }
  }

  @Test
  void calls_without_a_known_token_are_unauthenticated() {
    assertStatus(Status.Code.UNAUTHENTICATED, "missing or unknown bearer token",
        "no-such-token", TemplateServiceMethods.LIST_TEMPLATES, ListTemplatesRequest.getDefaultInstance());
    assertStatus(Status.Code.UNAUTHENTICATED, "missing or unknown bearer token",
        null, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.getDefaultInstance());
    assertTrue(catalog.warmed.isEmpty());
  }

  // ------------------------------------------------------------------------------ ls and rm

  @Test
  void list_is_most_recently_used_first() {
    Template old = call(TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setImage("old").build());
    Template recent = call(TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setImage("recent").build());
    catalog.use(recent.getId(), Instant.ofEpochSecond(5_000));
    catalog.use(old.getId(), Instant.ofEpochSecond(2_000));

    assertEquals(List.of(recent.getId(), old.getId()), call(TOKEN_A, TemplateServiceMethods.LIST_TEMPLATES,
        ListTemplatesRequest.getDefaultInstance()).getTemplatesList().stream().map(Template::getId).toList());
  }

  @Test
  void remove_refuses_a_template_in_use_and_a_bad_id() {
    Template t = call(TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.getDefaultInstance());
    catalog.clones(t.getId(), 2);

    assertStatus(Status.Code.FAILED_PRECONDITION, "template " + t.getId() + " is in use by 2 sandboxes: remove it when they have ended",
        TOKEN_A, TemplateServiceMethods.REMOVE_TEMPLATE, RemoveTemplateRequest.newBuilder().setId(t.getId()).build());
    assertStatus(Status.Code.INVALID_ARGUMENT, "id must be 1-256 characters",
        TOKEN_A, TemplateServiceMethods.REMOVE_TEMPLATE, RemoveTemplateRequest.getDefaultInstance());
    assertStatus(Status.Code.NOT_FOUND, "template tpl-nope not found on node " + NODE + ": `template ls`",
        TOKEN_A, TemplateServiceMethods.REMOVE_TEMPLATE, RemoveTemplateRequest.newBuilder().setId("tpl-nope").build());
  }

  // ------------------------------------------------------------------------------ bounds

  @Test
  void a_slow_warm_times_out_as_unavailable_and_holds_its_slot_until_it_ends() throws Exception {
    CountDownLatch release = new CountDownLatch(1);
    catalog.slow = release;
    try {
      assertStatus(Status.Code.UNAVAILABLE, "the template did not finish warming within 1 s (flotilla.templates.warm-timeout);"
              + " it goes on on node " + NODE + ": retry later",
          TOKEN_A, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.newBuilder().setImage("slow").build());
      // its VM still boots: the node's one warm slot stays taken
      assertStatus(Status.Code.UNAVAILABLE, "this node already warms 1 template(s) at once (flotilla.templates.max-concurrent-warms)",
          TOKEN_B, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.getDefaultInstance());
    } finally {
      release.countDown();
    }
    // once it has ended, the slot is free again (and the finished template is there)
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(10)).untilAsserted(() ->
        call(TOKEN_B, TemplateServiceMethods.WARM_TEMPLATE, WarmTemplateRequest.getDefaultInstance()));
    assertEquals(1, call(TOKEN_A, TemplateServiceMethods.LIST_TEMPLATES, ListTemplatesRequest.getDefaultInstance())
        .getTemplatesCount());
  }

  // ------------------------------------------------------------------------------ plumbing

  private static <Q, R> R call(String token, MethodDescriptor<Q, R> method, Q request) {
    Channel ch = channel;
    if (token != null) {
      Metadata h = new Metadata();
      h.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
      ch = ClientInterceptors.intercept(channel, MetadataUtils.newAttachHeadersInterceptor(h));
    }
    return ClientCalls.blockingUnaryCall(ch, method, CallOptions.DEFAULT.withDeadlineAfter(20, TimeUnit.SECONDS), request);
  }

  private static <Q, R> void assertStatus(Status.Code code, String messageStart, String token, MethodDescriptor<Q, R> method,
      Q request) {
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> call(token, method, request));
    assertEquals(code, e.getStatus().getCode(), String.valueOf(e.getStatus().getDescription()));
    String desc = String.valueOf(e.getStatus().getDescription());
    assertTrue(desc.startsWith(messageStart), "message: " + desc);
  }

  /** Templates per tenant in memory; image "broken" fails as a driver does, and "slow" waits for {@link #slow} when set. */
  static final class FakeCatalog implements TemplateCatalog {
    final List<WarmRequest> warmed = new java.util.concurrent.CopyOnWriteArrayList<>();
    private final List<Template> templates = new ArrayList<>();
    private final AtomicInteger ids = new AtomicInteger();
    volatile CountDownLatch slow;
    volatile boolean leak;

    synchronized void clear() {
      warmed.clear();
      templates.clear();
    }

    synchronized void use(String id, Instant when) {
      replace(id, t -> new Template(t.id(), t.tenant(), t.image(), t.imageDigest(), t.vcpus(), t.memoryMiB(), t.diskMiB(),
          t.bytes(), t.created(), when, t.clones()));
    }

    synchronized void clones(String id, int n) {
      replace(id, t -> new Template(t.id(), t.tenant(), t.image(), t.imageDigest(), t.vcpus(), t.memoryMiB(), t.diskMiB(),
          t.bytes(), t.created(), t.lastUsed(), n));
    }

    private void replace(String id, java.util.function.UnaryOperator<Template> f) {
      templates.replaceAll(t -> t.id().equals(id) ? f.apply(t) : t);
    }

    @Override
    public Template warm(WarmRequest r) throws VmException {
      warmed.add(r);
      if (r.image().startsWith("broken@")) throw new VmException("the image's init exited during the warm: fix the image");
      CountDownLatch wait = slow;
      if (r.image().startsWith("slow@") && wait != null) {
        try {
          wait.await(30, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
      synchronized (this) {
        for (Template t : templates) {
          if (t.tenant().equals(r.tenant()) && t.image().equals(r.image()) && t.vcpus() == r.vcpus()
              && t.memoryMiB() == r.memoryMiB()) {
            return t;
          }
        }
        Template t = new Template("tpl-" + ids.incrementAndGet(), r.tenant(), r.image(),
            r.image().isEmpty() ? "" : DIGEST, r.vcpus(), r.memoryMiB(), 1024, 210L << 20,
            Instant.ofEpochSecond(1_000), null, 0);
        templates.add(t);
        return t;
      }
    }

    @Override
    public synchronized List<Template> list(String tenant) {
      return templates.stream().filter(t -> leak || t.tenant().equals(tenant)).toList();
    }

    @Override
    public synchronized Template remove(String tenant, String id) throws VmException {
      for (Template t : templates) {
        if (t.id().equals(id) && t.tenant().equals(tenant)) {
          if (t.clones() > 0) {
            throw new InUse("template " + id + " is in use by " + t.clones() + " sandboxes: remove it when they have ended");
          }
          templates.remove(t);
          return t;
        }
      }
      throw new NotFound("template " + id + " not found");
    }
  }
}
