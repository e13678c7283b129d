package dev.flotilla.node.grpc;

import dev.flotilla.api.v1.ClusterService;
import dev.flotilla.api.v1.ClusterServicePowerApiHandlerFactory;
import dev.flotilla.api.v1.ImageService;
import dev.flotilla.api.v1.ImageServicePowerApiHandlerFactory;
import dev.flotilla.api.v1.SandboxService;
import dev.flotilla.api.v1.SandboxServicePowerApiHandlerFactory;
import dev.flotilla.api.v1.TemplateService;
import dev.flotilla.api.v1.TemplateServicePowerApiHandlerFactory;
import dev.flotilla.grpc.health.v1.Health;
import dev.flotilla.grpc.health.v1.HealthHandlerFactory;
import dev.flotilla.node.auth.TokenAuth;
import dev.flotilla.node.images.NodeImages;
import dev.flotilla.node.templates.NodeTemplates;
import dev.flotilla.sandbox.SandboxControl;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.grpc.javadsl.ServerReflection;
import org.apache.pekko.grpc.javadsl.ServiceHandler;
import org.apache.pekko.http.javadsl.Http;
import org.apache.pekko.http.javadsl.HttpsConnectionContext;
import org.apache.pekko.http.javadsl.ServerBuilder;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.apache.pekko.http.javadsl.model.HttpRequest;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.model.RequestEntity;
import org.apache.pekko.japi.function.Function;

/**
 * Binds the node's gRPC port (plaintext, or TLS with {@code https}): SandboxService, ImageService,
 * TemplateService, ClusterService, grpc.health.v1 and server reflection.
 */
public final class GrpcServer {
  private GrpcServer() {}

  public static CompletionStage<ServerBinding> bind(ActorSystem<?> system, SandboxControl control, NodeImages images,
      NodeTemplates templates, TokenAuth auth, Set<String> adminTenants, Duration askTimeout, String iface, int port,
      Optional<HttpsConnectionContext> https) {
    Function<HttpRequest, CompletionStage<HttpResponse>> sandboxes =
        SandboxServicePowerApiHandlerFactory.partial(new SandboxServiceImpl(control, auth, system), SandboxService.name, system);
    Function<HttpRequest, CompletionStage<HttpResponse>> imageService = ImageServicePowerApiHandlerFactory.partial(
        new ImageServiceImpl(images, auth, adminTenants, system), ImageService.name, system);
    Function<HttpRequest, CompletionStage<HttpResponse>> templateService = TemplateServicePowerApiHandlerFactory.partial(
        new TemplateServiceImpl(templates, auth), TemplateService.name, system);
    // An import is as large as flotilla.images.max-import-bytes (the service counts it), not
    // pekko-http's max-content-length.
    String importPath = "/" + ImageService.name + "/ImportImage";
    // An interactive exec lasts as long as its user types (or pipes): its messages are bounded,
    // and backpressured into the process's stdin, never gathered whole.
    String interactivePath = "/" + SandboxService.name + "/ExecInteractive";
    Function<HttpRequest, CompletionStage<HttpResponse>> cluster = ClusterServicePowerApiHandlerFactory.partial(
        new ClusterServiceImpl(system, auth, adminTenants, askTimeout), ClusterService.name, system);
    Function<HttpRequest, CompletionStage<HttpResponse>> health =
        HealthHandlerFactory.partial(new HealthServiceImpl(system), Health.name, system);
    Function<HttpRequest, CompletionStage<HttpResponse>> reflection =
        ServerReflection.create(
            List.of(SandboxService.description, ImageService.description, TemplateService.description, ClusterService.description,
                Health.description), system);
    @SuppressWarnings("unchecked")
    Function<HttpRequest, CompletionStage<HttpResponse>> services = ServiceHandler.concatOrNotFound(sandboxes, imageService, templateService, cluster, health,
        reflection);
    // Every message of every call is bounded before Pekko gRPC gathers it (GrpcMessageLimit).
    // The original entity's bytes keep its bound on the whole request in force: max-content-length,
    // or none for an import or an interactive exec.
    Function<HttpRequest, CompletionStage<HttpResponse>> all = req -> {
      String path = req.getUri().path();
      RequestEntity entity = path.equals(importPath) || path.equals(interactivePath)
          ? (RequestEntity) req.entity().withoutSizeLimit() : req.entity();
      return services.apply(req.withEntity(org.apache.pekko.http.javadsl.model.HttpEntities.create(entity.getContentType(),
          entity.getDataBytes().via(GrpcMessageLimit.flow(GrpcMessageLimit.MAX_MESSAGE_BYTES)))));
    };
    ServerBuilder server = Http.get(system).newServerAt(iface, port);
    if (https.isPresent()) server = server.enableHttps(https.get());
    return server.bind(all)
        .thenApply(b -> b.addToCoordinatedShutdown(Duration.ofSeconds(5), system));
  }

  public static String hostPort(ServerBinding b) {
    InetSocketAddress a = b.localAddress();
    return a.getHostString() + ":" + a.getPort();
  }
}
