package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// maxMessageSize is the gRPC message size limit the Pulumi engine and its plugins use
// (rpcutil's 400 MiB); the forwarder must not be the narrowest point on the path.
const maxMessageSize = 400 * 1024 * 1024

// frame is one gRPC message kept as its encoded bytes, so a forwarded call reaches the
// other side byte for byte, whatever the two sides' proto versions know about it.
type frame struct{ payload []byte }

// frameCodec passes frames through untouched and encodes every other message (the calls
// the adapter answers itself) as protobuf.
type frameCodec struct{}

func (frameCodec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case *frame:
		return m.payload, nil
	case proto.Message:
		return proto.Marshal(m)
	}
	return nil, fmt.Errorf("cannot encode %T", v)
}

func (frameCodec) Unmarshal(data []byte, v any) error {
	switch m := v.(type) {
	case *frame:
		m.payload = slices.Clone(data)
		return nil
	case proto.Message:
		return proto.Unmarshal(data, m)
	}
	return fmt.Errorf("cannot decode into %T", v)
}

func (frameCodec) Name() string { return "proto" }

// dialLocal opens a client connection to a gRPC server on 127.0.0.1.
func dialLocal(port int) (*grpc.ClientConn, error) {
	return grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageSize), grpc.MaxCallSendMsgSize(maxMessageSize)))
}

// serveLocal serves srv on a free port of 127.0.0.1 in the background and returns the port.
func serveLocal(srv *grpc.Server) (int, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	go func() { _ = srv.Serve(lis) }()
	return lis.Addr().(*net.TCPAddr).Port, nil
}

// newServer returns a gRPC server that answers the methods of desc named in own with
// impl and forwards every other call, of any service, through fwd.
func newServer(fwd *forwarder, desc *grpc.ServiceDesc, impl any, own ...string) *grpc.Server {
	srv := grpc.NewServer(
		grpc.UnknownServiceHandler(fwd.handle),
		grpc.ForceServerCodec(frameCodec{}),
		grpc.MaxRecvMsgSize(maxMessageSize),
	)
	sub := grpc.ServiceDesc{ServiceName: desc.ServiceName, HandlerType: desc.HandlerType, Metadata: desc.Metadata}
	for _, m := range desc.Methods {
		if slices.Contains(own, m.MethodName) {
			sub.Methods = append(sub.Methods, m)
		}
	}
	for _, s := range desc.Streams {
		if slices.Contains(own, s.StreamName) {
			sub.Streams = append(sub.Streams, s)
		}
	}
	srv.RegisterService(&sub, impl)
	return srv
}

// forwarder relays gRPC calls, unary and streaming alike, to the connection target
// returns: request and response messages as bytes, metadata both ways, deadlines and
// cancellation downstream, and the callee's status (code, message, details) back.
type forwarder struct {
	target func(ctx context.Context) (*grpc.ClientConn, error)
}

func (f *forwarder) handle(_ any, in grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(in)
	if !ok {
		return status.Error(codes.Internal, "forwarder: the incoming call has no method name")
	}
	conn, err := f.target(in.Context())
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(in.Context())
	defer cancel()
	if md, ok := metadata.FromIncomingContext(in.Context()); ok {
		ctx = metadata.NewOutgoingContext(ctx, forwardable(md))
	}
	out, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method,
		grpc.ForceCodec(frameCodec{}))
	if err != nil {
		return err
	}

	requests := make(chan error, 1)
	go func() { requests <- pumpRequests(in, out) }()
	responses := make(chan error, 1)
	go func() { responses <- pumpResponses(out, in) }()

	for {
		select {
		case err := <-requests:
			if err != nil {
				// The caller went away; cancelling ctx ends the downstream call too.
				return err
			}
			requests = nil
		case err := <-responses:
			in.SetTrailer(out.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// pumpRequests copies the caller's messages downstream until the caller half-closes.
func pumpRequests(in grpc.ServerStream, out grpc.ClientStream) error {
	for {
		var m frame
		if err := in.RecvMsg(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out.CloseSend()
			}
			return err
		}
		if err := out.SendMsg(&m); err != nil {
			// io.EOF: the callee has ended the call; its status arrives on the response side.
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// pumpResponses copies the callee's header and messages back to the caller; it returns
// io.EOF when the call ended well, else the callee's status error.
func pumpResponses(out grpc.ClientStream, in grpc.ServerStream) error {
	header := false
	for {
		var m frame
		err := out.RecvMsg(&m)
		if !header {
			header = true
			if md, herr := out.Header(); herr == nil && len(md) > 0 {
				if serr := in.SetHeader(forwardable(md)); serr != nil {
					return serr
				}
			}
		}
		if err != nil {
			return err
		}
		if err := in.SendMsg(&m); err != nil {
			return err
		}
	}
}

// transportHeaders are headers gRPC writes itself on every call; they are not copied
// from one call to the other. (gRPC's transport also drops its other reserved headers,
// such as the client's product token, when it writes metadata.)
var transportHeaders = []string{
	"content-type", "te", "grpc-encoding", "grpc-accept-encoding", "grpc-message-type",
	"grpc-message", "grpc-status", "grpc-status-details-bin", "grpc-timeout",
}

// forwardable returns md without pseudo-headers and transport headers.
func forwardable(md metadata.MD) metadata.MD {
	out := metadata.MD{}
	for k, v := range md {
		if strings.HasPrefix(k, ":") || slices.Contains(transportHeaders, k) {
			continue
		}
		out[k] = slices.Clone(v)
	}
	return out
}
