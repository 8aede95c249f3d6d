// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title merit achievement NFTs
/// @notice One token per unlocked achievement. Only holders of MINTER_ROLE (merit's minter
/// key) mint and burn, and a burn only takes a token from the holder merit expects;
/// holders transfer freely, and merit follows every Transfer log to recompute vote weights. The achievement a token was minted for is kept on chain so the
/// link survives any off-chain loss.
contract MeritAchievement is ERC721, AccessControl {
    /// @notice Role allowed to mint and burn.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    mapping(uint256 tokenId => bytes32 achievementId) private _achievements;

    /// @notice Emitted with the ERC-721 Transfer of a mint, naming the achievement.
    event AchievementMinted(uint256 indexed tokenId, bytes32 indexed achievementId);

    /// @notice The deployer administers roles and is the first minter.
    constructor() ERC721("Merit Achievement", "MERIT") {
        _grantRole(DEFAULT_ADMIN_ROLE, msg.sender);
        _grantRole(MINTER_ROLE, msg.sender);
    }

    /// @notice Mints `tokenId` to `to` for `achievementId`. Reverts if the token exists.
    /// @dev `_mint`, not `_safeMint`: a mint must not run code chosen by the recipient.
    function mint(address to, uint256 tokenId, bytes32 achievementId) external onlyRole(MINTER_ROLE) {
        _achievements[tokenId] = achievementId;
        _mint(to, tokenId);
        emit AchievementMinted(tokenId, achievementId);
    }

    /// @notice `tokenId` is not held by the owner a burn expected: it changed hands after
    /// merit last looked, so it belongs to someone else now and is not burned.
    error MeritOwnerChanged(uint256 tokenId, address expectedOwner, address owner);

    /// @notice Burns `tokenId` (a compensation, or a revoked achievement) only if
    /// `expectedOwner` still holds it; reverts with `MeritOwnerChanged` otherwise, and with
    /// `ERC721NonexistentToken` if it does not exist.
    /// @dev There is no burn without an expected owner: merit checks the owner off chain
    /// first, and a transfer mined between that check and the burn must not make the burn
    /// destroy a third party's token. The check and the burn are one transaction.
    function burnFrom(uint256 tokenId, address expectedOwner) external onlyRole(MINTER_ROLE) {
        address owner = ownerOf(tokenId);
        if (owner != expectedOwner) revert MeritOwnerChanged(tokenId, expectedOwner, owner);
        _burn(tokenId);
        delete _achievements[tokenId];
    }

    /// @notice The achievement `tokenId` was minted for. Reverts if the token does not exist.
    function achievementOf(uint256 tokenId) external view returns (bytes32) {
        _requireOwned(tokenId);
        return _achievements[tokenId];
    }

    /// @inheritdoc ERC721
    function supportsInterface(bytes4 interfaceId) public view override(ERC721, AccessControl) returns (bool) {
        return super.supportsInterface(interfaceId);
    }
}
