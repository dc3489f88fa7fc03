"""GET /api/v1/agents/{employee_id}/card: the agent card over REST, in the OpenAPI schema."""

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def _token_client() -> APIClient:
    """Any authenticated account: a card needs no organisation permission."""
    user = User.objects.create_user(f"reader-{User.objects.count()}")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_an_authenticated_caller_reads_the_card(make_agent):
    agent = make_agent("订单助手", "orders", capabilities=["订单查询"], description="查询订单和物流")
    response = _token_client().get(f"/api/v1/agents/{agent.employee_id}/card")
    assert response.status_code == 200, response.content
    card = response.json()
    assert (card["name"], card["description"]) == ("订单助手", "查询订单和物流")
    assert card["capabilities"] == {
        "streaming": True,
        "pushNotifications": False,
        "stateTransitionHistory": False,
    }
    # No skills set: one per capability.
    assert [(s["name"], s["tags"]) for s in card["skills"]] == [("订单查询", ["订单查询"])]
    assert card["mchat"]["reach"]["action"] == "msg.send_private"


def test_anonymous_gets_401_and_a_person_has_no_card(make_agent, owner):
    agent = make_agent("订单助手", "orders")
    assert APIClient().get(f"/api/v1/agents/{agent.employee_id}/card").status_code == 401
    missing = _token_client().get(f"/api/v1/agents/{owner.employee_id}/card")
    assert missing.status_code == 404
    assert missing.json()["code"] == 404


def test_the_card_is_in_the_openapi_schema():
    from drf_spectacular.generators import SchemaGenerator

    from org import urls

    schema = SchemaGenerator(patterns=urls.urlpatterns).get_schema(request=None, public=True)
    assert "get" in schema["paths"]["/api/v1/agents/{employee_id}/card"]
