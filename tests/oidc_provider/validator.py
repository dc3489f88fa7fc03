from oauth2_provider.oauth2_validators import OAuth2Validator


class EmailClaims(OAuth2Validator):
    """Claims an enterprise provider sends: email (scope email), name (scope profile)."""

    def get_additional_claims(self, request):
        return {"email": request.user.email, "name": request.user.get_full_name() or request.user.username}
