"""The committer's UpdatePath (RFC 9420 §7.4-§7.6, §12.4.1) for :mod:`rfc9420`'s tree.

rfc9420 1.3.0 sends an UpdatePath whose leaf node keeps the old encryption key and the
key package's signature, and encrypts the path secrets under a GroupContext whose tree
hash still covers the old leaf: libdave ("Commit path has invalid leaf node") and davey
(``UpdatePathError(SignatureError)``) refuse every such commit. :class:`DaveRatchetTree`
is rfc9420's array tree with that operation done as the RFC says (and the filtered
direct path computed as the RFC says, for sending and receiving):

1. a fresh path secret for the first node of the filtered direct path, each next one
   ``DeriveSecret(previous, "path")``, node keys from ``DeriveSecret(secret, "node")``,
   unfiltered direct-path nodes blanked; the commit secret is one step past the last;
2. parent hashes top-down, then the leaf's parent hash;
3. a new leaf node: a fresh HPKE key pair, source ``commit``, that parent hash, signed
   as LeafNodeTBS with the group id and leaf index (§7.2), put in the tree;
4. the provisional GroupContext's tree hash recomputed over that tree, and each path
   secret encrypted (EncryptWithLabel "UpdatePathNode") to the resolution of its copath
   child, minus the members added by the same commit.

It is registered as rfc9420 tree backend ``framecrypt-dave`` (rfc9420's own extension
point); the signing key and group id reach it through :func:`signing` around
``create_commit``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any

from rfc9420.codec.tls import write_opaque_varint
from rfc9420.crypto import labels
from rfc9420.crypto.hpke_labels import encrypt_with_label
from rfc9420.messages.data_structures import GroupContext, UpdatePath, UpdatePathNode
from rfc9420.messages.key_packages import LeafNode, LeafNodeSource
from rfc9420.protocol.tree import tree_math
from rfc9420.protocol.tree.ratchet_tree import RatchetTree
from rfc9420.protocol.tree.ratchet_tree_backend import register_tree_backend

from .errors import MlsError

BACKEND_ID = "framecrypt-dave"
_SIGNER: contextvars.ContextVar[tuple[bytes, bytes] | None] = contextvars.ContextVar(
    "framecrypt_mls_signer", default=None)


@contextlib.contextmanager
def signing(signature_key: bytes, group_id: bytes) -> Iterator[None]:
    """The committer's signature private key (P-256 scalar) and the group id, for the
    UpdatePath made inside this block."""
    token = _SIGNER.set((signature_key, group_id))
    try:
        yield
    finally:
        _SIGNER.reset(token)


class DaveRatchetTree(RatchetTree):
    backend_id = BACKEND_ID

    def _filtered_direct_path_pairs(
        self, node_index: int, excluded_leaf_pubkeys: set[bytes] | None = None
    ) -> list[tuple[int, int]]:
        """The filtered direct path (§4.1.2) is a property of the tree: a node stays when
        its copath child's resolution is not empty, *counting* the leaves this commit
        adds (they only get no ciphertext, §12.4.2). rfc9420 drops nodes whose copath
        holds only new members, so its path commits and its reading of libdave's and
        OpenMLS's differ in length whenever an Add lands alone under a copath node."""
        pairs: list[tuple[int, int]] = super()._filtered_direct_path_pairs(node_index, None)
        return pairs

    def create_update_path(
        self,
        committer_index: int,
        new_leaf_node: LeafNode,
        group_context_bytes: bytes,
        excluded_leaf_pubkeys: set[bytes] | None = None,
    ) -> tuple[UpdatePath, bytes, dict[int, bytes]]:
        signer = _SIGNER.get()
        if signer is None:
            raise MlsError("an UpdatePath needs the committer's key (mls_path.signing)")
        signature_key, group_id = signer
        crypto: Any = self._crypto_provider
        leaf_index = 2 * committer_index
        pairs = self._filtered_direct_path_pairs(leaf_index)
        filtered = {node for node, _ in pairs}

        secret = self._rand_provider.random_bytes(crypto.kdf_hash_len())
        path_secrets: dict[int, bytes] = {}
        for node_index in tree_math.direct_path(leaf_index, self.n_leaves):
            node = self.get_node(node_index)
            node.unmerged_leaves = []
            if node_index in filtered:
                path_secrets[node_index] = secret
                node.private_key, node.public_key = crypto.derive_key_pair(
                    crypto.derive_secret(secret, b"node"))
                secret = crypto.derive_secret(secret, b"path")
            else:
                node.private_key = node.public_key = None
        commit_secret = secret

        self._set_filtered_path_parent_hashes(leaf_index, pairs)
        leaf_private, leaf_public = crypto.generate_key_pair()
        leaf = LeafNode(
            encryption_key=leaf_public,
            signature_key=new_leaf_node.signature_key,
            credential=new_leaf_node.credential,
            capabilities=new_leaf_node.capabilities,
            leaf_node_source=LeafNodeSource.COMMIT,
            parent_hash=self._compute_parent_hash_for_leaf(committer_index),
            extensions=new_leaf_node.extensions,
        )
        tbs = leaf.tbs_serialize(group_id=group_id, leaf_index=committer_index)
        leaf = dataclasses.replace(
            leaf, signature=crypto.sign_with_label(signature_key, b"LeafNodeTBS", tbs))
        own = self.get_node(leaf_index)
        own.leaf_node, own.public_key, own.private_key = leaf, leaf_public, leaf_private
        self._recalculate_hashes_from(leaf_index)

        gc = GroupContext.deserialize(group_context_bytes)
        context = GroupContext(gc.group_id, gc.epoch, self.calculate_tree_hash(),
                               gc.confirmed_transcript_hash, gc.extensions,
                               cipher_suite_id=gc.cipher_suite_id).serialize()
        nodes = []
        for node_index, copath_child in pairs:
            ciphertexts = []
            for target in self.resolve(copath_child, excluded_leaf_pubkeys=excluded_leaf_pubkeys):
                if target.public_key is None:
                    raise MlsError("a resolution node without a key")
                enc, ct = encrypt_with_label(
                    crypto, recipient_public_key=target.public_key,
                    label=labels.HPKE_UPDATE_PATH_NODE, context=context, aad=b"",
                    plaintext=path_secrets[node_index])
                ciphertexts.append(write_opaque_varint(enc) + write_opaque_varint(ct))
            node_key = self.get_node(node_index).public_key
            assert node_key is not None  # set by the loop above
            nodes.append(UpdatePathNode(encryption_key=node_key,
                                        encrypted_path_secrets=ciphertexts))
        return UpdatePath(leaf.serialize(), nodes), commit_secret, path_secrets


register_tree_backend(BACKEND_ID, lambda crypto, rand: DaveRatchetTree(crypto, rand))
